"""Seed data written straight into the database, and access tokens obtained over HTTP.

Users get one Argon2 hash computed once (hashing a thousand passwords would take minutes);
refresh tokens are minted as SessionService does, so rotation never runs dry; authorization
codes as AuthorizationService.issue_code does, each in a live browser session.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine, create_engine, insert, select, text, update

from idp.clock import utcnow
from idp.models import OAuthClient, RefreshSession, RefreshToken, User
from idp.models.authorization import AuthorizationCode
from idp.models.browser import BrowserSession
from idp.services.accounts import canonical_email
from idp.services.clients import CONFIDENTIAL_GRANTS, REDIRECT_GRANTS
from idp.services.secret_tokens import digest, new_secret
from idp.services.sessions import API_SCOPE
from tests.benchmarks.params import API_CLIENT_ID, PASSWORD, Argon2Params

REFRESH_TTL = timedelta(days=14)
CLIENT_SCOPE = "bench.read"
# The relying app of the code-exchange and userinfo scenarios: a server-side web app.
APP_REDIRECT_URI = "https://app.bench.test/callback"
APP_SCOPE = "openid profile email"
CODE_VERIFIER = "bench-pkce-code-verifier-" + "0123456789" * 3  # 55 unreserved characters
# Codes are seeded before the run and must outlive it (the server's own TTL is 60 s).
CODE_TTL = timedelta(minutes=30)
BROWSER_SESSIONS = 100


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str

    def basic_auth(self) -> str:
        """The `Authorization` header value for client_secret_basic."""
        pair = f"{self.client_id}:{self.secret}".encode()
        return "Basic " + base64.b64encode(pair).decode()


@dataclass
class TokenPool:
    """Unspent single-use tokens (refresh tokens, authorization codes); a wrk run takes them in
    per-thread slices of a file."""

    tokens: list[str] = field(default_factory=list)

    def write(self, path: Path) -> Path:
        path.write_text("\n".join(self.tokens) + "\n")
        return path

    def take(self, count: int) -> list[str]:
        """Remove and return the first `count` tokens (to spend outside a wrk run)."""
        taken, self.tokens = self.tokens[:count], self.tokens[count:]
        return taken

    def spend(self, used_per_thread: tuple[int, ...]) -> None:
        """Drop what a run over the last written file used: thread i took lines i, i+n, ..."""
        threads = len(used_per_thread)
        spent = {i + k * threads for i, used in enumerate(used_per_thread) for k in range(used)}
        self.tokens = [t for index, t in enumerate(self.tokens) if index not in spent]


@dataclass(frozen=True)
class Seeded:
    emails: list[str]
    client: Client
    refresh_pool: TokenPool
    app: Client
    code_pool: TokenPool


def seed(
    database_url: str, users: int, refresh_tokens: int, codes: int, argon2: Argon2Params
) -> Seeded:
    """Insert verified users, a service client, a web app, and pools of live refresh tokens
    and authorization codes."""
    engine = create_engine(database_url)
    try:
        emails = _insert_users(engine, users, argon2.hasher().hash(PASSWORD))
        client = _insert_client(engine)
        pool = TokenPool(_insert_refresh_tokens(engine, refresh_tokens))
        app = _insert_app(engine)
        code_pool = TokenPool(_insert_codes(engine, app.client_id, codes))
        if engine.dialect.name == "postgresql":
            # Planner statistics, as a database in service has them.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
    finally:
        engine.dispose()
    return Seeded(emails, client, pool, app, code_pool)


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
    return _insert_confidential(
        engine,
        name="benchmark",
        grant_types=" ".join(sorted(CONFIDENTIAL_GRANTS)),
        scope=CLIENT_SCOPE,
        can_introspect=True,  # the introspect scenario's caller is a resource server
    )


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


def _insert_app(engine: Engine) -> Client:
    """A confidential web app, stored as create_client(kind=CONFIDENTIAL) stores one."""
    return _insert_confidential(
        engine,
        name="benchmark app",
        grant_types=" ".join(sorted(REDIRECT_GRANTS)),
        scope=APP_SCOPE,
        is_public=False,
        first_party=True,
        redirect_uris=APP_REDIRECT_URI,
        post_logout_redirect_uris="",
        audiences="",
        can_introspect=False,
    )


def _insert_confidential(engine: Engine, **columns: Any) -> Client:
    """Store a client with a fresh id and secret (its digest) and these columns."""
    client = Client(client_id=secrets.token_hex(16), secret=new_secret())
    with engine.begin() as conn:
        conn.execute(
            insert(OAuthClient).values(
                client_id=client.client_id,
                client_secret_hash=digest(client.secret),
                created_at=utcnow(),
                **columns,
            )
        )
    return client


def code_challenge(verifier: str) -> str:
    """PKCE S256 (RFC 7636): BASE64URL(SHA-256(verifier)) without padding."""
    hashed = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(hashed).rstrip(b"=").decode("ascii")


def _insert_codes(engine: Engine, client_id: str, count: int) -> list[str]:
    """Codes for the app, spread over live browser sessions of the first users."""
    if count == 0:
        return []
    now = utcnow()
    with engine.begin() as conn:
        user_ids = list(conn.scalars(select(User.id).order_by(User.id).limit(BROWSER_SESSIONS)))
        sessions = [
            {
                "public_id": secrets.token_urlsafe(24),
                "cookie_hash": digest(new_secret()),
                "user_id": user_id,
                "created_at": now,
                "auth_time": now,
                "last_seen_at": now,
            }
            for user_id in user_ids
        ]
        conn.execute(insert(BrowserSession), sessions)
        by_user = dict(
            conn.execute(
                select(BrowserSession.user_id, BrowserSession.id).where(
                    BrowserSession.user_id.in_(user_ids)
                )
            ).all()
        )
        raw_codes = [new_secret() for _ in range(count)]
        challenge = code_challenge(CODE_VERIFIER)
        rows = [
            {
                "code_hash": digest(raw),
                "client_id": client_id,
                "user_id": user_ids[i % len(user_ids)],
                "browser_session_id": by_user[user_ids[i % len(user_ids)]],
                "redirect_uri": APP_REDIRECT_URI,
                "scope": APP_SCOPE,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "auth_time": now,
                "created_at": now,
                "expires_at": now + CODE_TTL,
            }
            for i, raw in enumerate(raw_codes)
        ]
        conn.execute(insert(AuthorizationCode), rows)
    return raw_codes


def redeem_codes(base_url: str, app: Client, codes: list[str]) -> list[str]:
    """Exchange codes over HTTP as the app would; the access tokens (for userinfo)."""
    tokens = []
    for code in codes:
        response = requests.post(
            f"{base_url}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": APP_REDIRECT_URI,
                "code_verifier": CODE_VERIFIER,
            },
            headers={"Authorization": app.basic_auth()},
            timeout=30,
        )
        response.raise_for_status()
        tokens.append(response.json()["access_token"])
    return tokens


@dataclass(frozen=True)
class SignInForm:
    """What a browser holds after opening the sign-in page: its cookie and the form's token."""

    cookie: str
    csrf_token: str


def open_sign_in_page(base_url: str) -> SignInForm:
    session = requests.Session()
    response = session.get(f"{base_url}/signin", timeout=30)
    response.raise_for_status()
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', response.text)
    assert found, "no csrf_token on the sign-in page"
    cookie = "; ".join(f"{name}={value}" for name, value in session.cookies.items())
    return SignInForm(cookie, found.group(1))


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
