"""Seed data written straight into the database, and access tokens obtained over HTTP.

Users get one Argon2 hash computed once (hashing a thousand passwords would take minutes);
refresh tokens are minted as SessionService does, so rotation never runs dry.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import requests
from sqlalchemy import Engine, create_engine, insert, select, text, update

from idp.clock import utcnow
from idp.models import OAuthClient, RefreshSession, RefreshToken, User
from idp.services.accounts import canonical_email
from idp.services.clients import CONFIDENTIAL_GRANTS
from idp.services.secret_tokens import digest, new_secret
from idp.services.sessions import API_SCOPE
from tests.benchmarks.params import API_CLIENT_ID, PASSWORD, Argon2Params

REFRESH_TTL = timedelta(days=14)
CLIENT_SCOPE = "bench.read"


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str

    def basic_auth(self) -> str:
        """The `Authorization` header value for client_secret_basic."""
        pair = f"{self.client_id}:{self.secret}".encode()
        return "Basic " + base64.b64encode(pair).decode()


@dataclass
class RefreshPool:
    """Unspent refresh tokens; a wrk run takes them in per-thread slices of a file."""

    tokens: list[str] = field(default_factory=list)

    def write(self, path: Path) -> Path:
        path.write_text("\n".join(self.tokens) + "\n")
        return path

    def spend(self, used_per_thread: tuple[int, ...]) -> None:
        """Drop what a run over the last written file used: thread i took lines i, i+n, ..."""
        threads = len(used_per_thread)
        spent = {i + k * threads for i, used in enumerate(used_per_thread) for k in range(used)}
        self.tokens = [t for index, t in enumerate(self.tokens) if index not in spent]


@dataclass(frozen=True)
class Seeded:
    emails: list[str]
    client: Client
    refresh_pool: RefreshPool


def seed(database_url: str, users: int, refresh_tokens: int, argon2: Argon2Params) -> Seeded:
    """Insert verified users, one confidential client and a pool of live refresh tokens."""
    engine = create_engine(database_url)
    try:
        emails = _insert_users(engine, users, argon2.hasher().hash(PASSWORD))
        client = _insert_client(engine)
        pool = RefreshPool(_insert_refresh_tokens(engine, refresh_tokens))
        if engine.dialect.name == "postgresql":
            # Planner statistics, as a database in service has them.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
    finally:
        engine.dispose()
    return Seeded(emails, client, pool)


def set_password_hashes(database_url: str, argon2: Argon2Params) -> None:
    """Give every user a hash of the shared password made with other Argon2 parameters."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(User).values(password_hash=argon2.hasher().hash(PASSWORD)))
    finally:
        engine.dispose()


def _insert_users(engine: Engine, count: int, password_hash: str) -> list[str]:
    now = utcnow()
    emails = [f"bench-user-{i:05d}@example.com" for i in range(count)]
    rows = [
        {
            "public_id": str(uuid.uuid4()),
            "email": email,
            "email_canonical": canonical_email(email),
            "password_hash": password_hash,
            "first_name": "Bench",
            "last_name": f"User {i}",
            "is_active": True,
            "email_verified_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for i, email in enumerate(emails)
    ]
    with engine.begin() as conn:
        conn.execute(insert(User), rows)
    return emails


def _insert_client(engine: Engine) -> Client:
    """A confidential client, stored as idp.services.clients.create_client stores one."""
    client = Client(client_id=secrets.token_hex(16), secret=new_secret())
    with engine.begin() as conn:
        conn.execute(
            insert(OAuthClient).values(
                client_id=client.client_id,
                client_secret_hash=digest(client.secret),
                name="benchmark",
                grant_types=" ".join(sorted(CONFIDENTIAL_GRANTS)),
                scope=CLIENT_SCOPE,
                can_introspect=True,  # the introspect scenario's caller is a resource server
                created_at=utcnow(),
            )
        )
    return client


def _insert_refresh_tokens(engine: Engine, count: int) -> list[str]:
    """One API session per token, each as SessionService.start would leave it."""
    if count == 0:
        return []
    now = utcnow()
    with engine.begin() as conn:
        user_ids = list(conn.scalars(select(User.id).order_by(User.id)))
        sessions = [
            {
                "public_id": secrets.token_urlsafe(24),
                "user_id": user_ids[i % len(user_ids)],
                "client_id": API_CLIENT_ID,
                "scope": API_SCOPE,
                "created_at": now,
            }
            for i in range(count)
        ]
        conn.execute(insert(RefreshSession), sessions)
        session_ids = dict(conn.execute(select(RefreshSession.public_id, RefreshSession.id)).all())
        raw_tokens = [new_secret() for _ in range(count)]
        rows = [
            {
                "session_id": session_ids[session["public_id"]],
                "token_hash": digest(raw),
                "created_at": now,
                "expires_at": now + REFRESH_TTL,
            }
            for session, raw in zip(sessions, raw_tokens, strict=True)
        ]
        conn.execute(insert(RefreshToken), rows)
    return raw_tokens


def login_access_tokens(base_url: str, emails: list[str], count: int) -> list[str]:
    """Log `count` users in through the API and return their access tokens."""

    def login(email: str) -> str:
        response = requests.post(
            f"{base_url}/api/v1/auth/login/",
            json={"email": email, "password": PASSWORD},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()["data"]["token"]

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(login, emails[:count]))
