"""RS256 access tokens in the RFC 9068 profile: minting, and verification that trusts nothing.

Verification follows RFC 8725: the algorithm is fixed (never read from the token), the key is
chosen only among our own published keys by kid, key-carrying headers are refused, and every
registered claim is checked before the database sees any value from the token.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry
from sqlalchemy import bindparam, exists, select
from sqlalchemy.exc import SQLAlchemyError

from idp import audit
from idp.database import is_unavailable, read_one
from idp.errors import InvalidAccessToken
from idp.models import OAuthClient, RefreshSession, RevokedAccessToken, User
from idp.services.keys import ALGORITHM, KeyStore
from idp.services.revocation_cache import RevocationCache

TOKEN_TYPE = "at+jwt"
MAX_TOKEN_LENGTH = 4096
# Headers that would let a token name its own key or critical extensions we do not implement.
_FORBIDDEN_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c", "crit", "zip", "enc"})
# Built once: joserfc would otherwise build a registry for every verification.
_SIGNATURES = jws.JWSRegistry(algorithms=[ALGORITHM])


@dataclass(frozen=True)
class TokenUser:
    """The account behind a verified token, as the verification query read it."""

    id: int
    public_id: str
    email: str
    first_name: str
    last_name: str
    company_name: str | None
    email_verified_at: datetime | None
    is_active: bool


@dataclass(frozen=True)
class AccessToken:
    """A verified access token and whom it was issued for."""

    claims: dict[str, Any]
    user: TokenUser | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def jti(self) -> str:
        return self.claims["jti"]


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    expires_in: int
    claims: dict[str, Any]


class AccessTokenService:
    """Mint and verify the server's access tokens."""

    def __init__(
        self,
        keys: KeyStore,
        issuer: str,
        audience: str,
        ttl: int,
        leeway: int,
        revocations: RevocationCache,
    ) -> None:
        self.keys = keys
        self.revocations = revocations
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.leeway = leeway

    def issue(
        self,
        *,
        subject: str,
        client_id: str,
        scope: str,
        now: datetime,
        session_id: str | None = None,
        audience: str | list[str] | None = None,
    ) -> IssuedAccessToken:
        """Sign an access token for a user session (session_id given) or for a client.

        `audience` is the resource servers it is for; None: this server's own (IDP_AUDIENCE).
        """
        kid, key = self.keys.signing_key()
        iat = int(now.timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience or self.audience,
            "exp": iat + self.ttl,
            "iat": iat,
            "jti": secrets.token_urlsafe(16),
            "client_id": client_id,
            "scope": scope,
        }
        if session_id is not None:
            claims["sid"] = session_id
        header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": kid}
        token = jwt.encode(header, claims, key, algorithms=[ALGORITHM])
        return IssuedAccessToken(token, self.ttl, claims)

    def issue_to_client(
        self,
        client_id: str,
        scope: str,
        now: datetime,
        audience: str | list[str] | None = None,
    ) -> IssuedAccessToken:
        """Sign a client's own token (client_credentials; RFC 9068: sub is the client)."""
        issued = self.issue(
            subject=client_id, client_id=client_id, scope=scope, now=now, audience=audience
        )
        audit.record(
            "token.issued", "success", client_id=client_id, scope=scope, jti=issued.claims["jti"]
        )
        return issued

    def decode(self, token: str, now: datetime, any_audience: bool = False) -> dict[str, Any]:
        """Check signature and claims only; raise InvalidAccessToken on any doubt.

        The token must be meant for this server (IDP_AUDIENCE in its `aud`), unless
        `any_audience`: introspection answers for other resource servers too, and checks
        the audience against the asking one itself.
        """
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidAccessToken()
        try:
            # joserfc parses the compact form (sizes bounded); nothing is trusted yet.
            compact = jws.extract_compact(token.encode("ascii"))
        except (JoseError, ValueError, RecursionError) as exc:
            # RecursionError: a header of deeply nested arrays, which json raises on.
            raise InvalidAccessToken() from exc
        header = compact.headers()
        if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
            raise InvalidAccessToken()
        if str(header.get("typ", "")).lower() not in (TOKEN_TYPE, f"application/{TOKEN_TYPE}"):
            raise InvalidAccessToken()
        if _FORBIDDEN_HEADERS & header.keys():
            raise InvalidAccessToken()
        kid = header.get("kid")
        key = self.keys.verification_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidAccessToken()
        try:
            if not jws.validate_compact(compact, key, registry=_SIGNATURES):
                raise InvalidAccessToken()
            claims = json.loads(compact.payload)
            if not isinstance(claims, dict):
                raise InvalidAccessToken()
            registry = JWTClaimsRegistry(
                now=int(now.timestamp()),
                leeway=self.leeway,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True}
                if any_audience
                else {"essential": True, "value": self.audience},
                sub={"essential": True},
                exp={"essential": True},
                iat={"essential": True},
                jti={"essential": True},
                client_id={"essential": True},
            )
            # Checks iss, aud, exp, and an iat in the future (beyond the leeway) too.
            registry.validate(claims)
        except (JoseError, ValueError, TypeError, RecursionError) as exc:
            raise InvalidAccessToken() from exc
        if not _well_typed(claims):
            raise InvalidAccessToken()
        return claims

    def verify(self, token: str, now: datetime, any_audience: bool = False) -> AccessToken:
        """Decode the token, then check it against revocation and the account or client.

        One query per token (no ORM objects on this hot path): the denylist, and the user with
        the token's session, or the client. Nothing is cached between requests, so a revocation
        made anywhere is seen on the next request.
        """
        claims = self.decode(token, now, any_audience)
        try:
            return self._check_standing(claims)
        except SQLAlchemyError as exc:
            # The database cannot answer. Redis may still know the token was revoked: then the
            # answer is a definite no (401) instead of "try later" (503). It never says yes.
            if is_unavailable(exc) and self.revocations.refuses(claims):
                raise InvalidAccessToken() from exc
            raise

    def _check_standing(self, claims: dict[str, Any]) -> AccessToken:
        scopes = frozenset(claims.get("scope", "").split())
        if "sid" not in claims:
            client = read_one(
                _CLIENT_CHECK, {"client_id": claims["client_id"], "jti": claims["jti"]}
            )
            if (
                client is None
                or client.denied
                or client.deleted_at is not None
                or claims["sub"] != client.client_id
            ):
                raise InvalidAccessToken()
            return AccessToken(claims, None, scopes)
        row = read_one(
            _USER_CHECK, {"sub": claims["sub"], "sid": claims["sid"], "jti": claims["jti"]}
        )
        if row is None or row.denied or row.session_revoked_at is not None or not row.is_active:
            raise InvalidAccessToken()
        valid_after = row.sessions_valid_after
        if valid_after is not None and claims["iat"] < int(valid_after.timestamp()):
            raise InvalidAccessToken()
        user = TokenUser(
            id=row.id,
            public_id=row.public_id,
            email=row.email,
            first_name=row.first_name,
            last_name=row.last_name,
            company_name=row.company_name,
            email_verified_at=row.email_verified_at,
            is_active=row.is_active,
        )
        return AccessToken(claims, user, scopes)


_users = User.__table__
_sessions = RefreshSession.__table__
_clients = OAuthClient.__table__
_denied = exists().where(RevokedAccessToken.__table__.c.jti == bindparam("jti")).label("denied")
_USER_CHECK = (
    select(
        _users.c.id,
        _users.c.public_id,
        _users.c.email,
        _users.c.first_name,
        _users.c.last_name,
        _users.c.company_name,
        _users.c.email_verified_at,
        _users.c.is_active,
        _users.c.sessions_valid_after,
        _sessions.c.revoked_at.label("session_revoked_at"),
        _denied,
    )
    .join_from(_users, _sessions, _sessions.c.user_id == _users.c.id)
    .where(_users.c.public_id == bindparam("sub"), _sessions.c.public_id == bindparam("sid"))
)
_CLIENT_CHECK = select(_clients.c.client_id, _clients.c.deleted_at, _denied).where(
    _clients.c.client_id == bindparam("client_id")
)


def _well_typed(claims: dict[str, Any]) -> bool:
    strings = ("sub", "jti", "client_id")
    if not all(isinstance(claims.get(name), str) and claims[name] for name in strings):
        return False
    if len(claims["jti"]) > 64 or len(claims["sub"]) > 64 or len(claims["client_id"]) > 64:
        return False
    if not isinstance(claims.get("scope", ""), str):
        return False
    if "sid" in claims and not (isinstance(claims["sid"], str) and len(claims["sid"]) <= 43):
        return False
    numbers = ("exp", "iat")
    return all(
        isinstance(claims[name], int) and not isinstance(claims[name], bool) for name in numbers
    )
