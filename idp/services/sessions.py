"""Login sessions: refresh-token families with rotation and reuse detection (RFC 9700 4.14)."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import joinedload

from idp import audit
from idp.errors import InvalidRefreshToken, TokenMismatch
from idp.extensions import db
from idp.models import RefreshSession, RefreshToken, RevokedAccessToken, User
from idp.services.access_tokens import AccessToken, AccessTokenService
from idp.services.revocation_cache import RevocationCache
from idp.services.secret_tokens import digest, new_secret
from idp.transaction import after_commit

# INSERT ... ON CONFLICT DO NOTHING, in each dialect we run on.
_DIALECT_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}

# Revocation reasons, kept on the session row.
LOGOUT = "logout"
REUSE_DETECTED = "reuse_detected"
PASSWORD_RESET = "password_reset"
REVOKED_BY_CLIENT = "revoked_by_client"

# What the /api/v1/auth facade grants to its own sessions.
API_SCOPE = "profile email"


class OpenedSession(NamedTuple):
    """A session row as start() inserted it: what minting its tokens reads."""

    id: int
    public_id: str
    client_id: str
    scope: str
    created_at: datetime
    audience: str | None


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str | None  # None for a session opened without offline_access
    expires_in: int
    scope: str
    user: User
    session_id: str


class SessionService:
    """Start, rotate and end refresh sessions; mint the access tokens that belong to them."""

    def __init__(
        self,
        access_tokens: AccessTokenService,
        revocations: RevocationCache,
        refresh_ttl: int,
        reuse_grace: int,
        max_age: int = 30 * 24 * 3600,
    ) -> None:
        self.access_tokens = access_tokens
        # Told of every revocation after it commits; see idp.services.revocation_cache.
        self.revocations = revocations
        self.refresh_ttl = timedelta(seconds=refresh_ttl)
        self.reuse_grace = timedelta(seconds=reuse_grace)
        # Absolute session lifetime (ASVS 3.3.2): rotation slides each token's expiry, never
        # past this much after the login.
        self.max_age = timedelta(seconds=max_age)

    def start(
        self,
        user: User,
        client_id: str,
        scope: str,
        now: datetime,
        *,
        browser_session_id: int | None = None,
        refreshable: bool = True,
        audience: str | list[str] | None = None,
    ) -> TokenPair:
        """Open a session for a freshly authenticated user; the caller commits it.

        A session that is not refreshable still exists: its access tokens name it (`sid`),
        so ending it (sign-out, a reused code) ends them.
        """
        # A Core INSERT that returns the id: no ORM object (and no flush) for a row this request
        # only writes.
        row = {
            "public_id": secrets.token_urlsafe(24),
            "user_id": user.id,
            "client_id": client_id,
            "scope": scope,
            "created_at": now,
            "browser_session_id": browser_session_id,
            # Kept so that every token rotated from this session names the same audience.
            "audience": " ".join([audience] if isinstance(audience, str) else audience)
            if audience
            else None,
        }
        row_id = db.session.execute(_INSERT_SESSION, row).scalar_one()
        opened = OpenedSession(row_id, row["public_id"], client_id, scope, now, row["audience"])
        return self._mint(opened, user, now, refreshable)

    def rotate(self, raw_refresh_token: str, client_id: str, now: datetime) -> TokenPair:
        """Spend a refresh token and return a new pair; a replayed token ends its session."""
        token_hash = digest(raw_refresh_token)
        # Spend first, with a single conditional UPDATE: of two racing requests exactly one
        # sees a row change. Writing before reading also keeps SQLite from a stale snapshot.
        spent = db.session.execute(
            _SPEND, {"presented_hash": token_hash, "now": now, "client_id": client_id}
        ).scalar_one_or_none()
        if spent is not None:
            # The session and its user in one query: both are needed for the new pair.
            session = db.session.scalars(_SESSION_WITH_USER, {"session_id": spent}).one()
            who = _audit_fields(session, client_id)
            if not session.user.is_active:
                db.session.rollback()
                audit.record("session.refresh", "failure", reason="inactive_user", **who)
                raise InvalidRefreshToken()
            pair = self._mint(session, session.user, now)
            after_commit(audit.record, "session.refresh", "success", **who)
            return pair
        return self._reject_or_grace(token_hash, client_id, now)

    def _reject_or_grace(self, token_hash: str, client_id: str, now: datetime) -> TokenPair:
        row = db.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
        if row is None:
            db.session.rollback()
            audit.record("session.refresh", "failure", reason="unknown_token", client_id=client_id)
            raise InvalidRefreshToken()
        session = row.session
        who = _audit_fields(session, client_id)
        if row.used_at is None or session.client_id != client_id or session.revoked_at is not None:
            # Expired, from another client, or its session has ended: nothing to revoke.
            reason = _refusal_reason(row, client_id)
            db.session.rollback()
            audit.record("session.refresh", "failure", reason=reason, **who)
            raise InvalidRefreshToken()
        in_grace = self.reuse_grace and row.used_at > now - self.reuse_grace
        if (
            in_grace
            and row.expires_at > now
            and session.user.is_active
            # Once per token: a conditional UPDATE, so of two late copies only one gets a pair
            # and a thief replaying it again within the grace is caught as reuse.
            and db.session.execute(_CLAIM_GRACE, {"token_id": row.id, "now": now}).rowcount == 1
        ):
            # Two tabs refreshing with one token at once: the late one gets a sibling token.
            pair = self._mint(session, session.user, now)
            after_commit(audit.record, "session.refresh", "success", grace=True, **who)
            return pair
        self._revoke(session, REUSE_DETECTED, now)
        # Committed here, not by the request: the request fails, and the revocation must stay.
        db.session.commit()
        self.revocations.sessions_revoked([who["session_id"]])
        audit.record("session.reuse_detected", "denied", **who)
        raise InvalidRefreshToken()

    def logout(
        self,
        access: AccessToken,
        header_token: str | None,
        body_token: str | None,
        refresh_token: str | None,
        now: datetime,
    ) -> None:
        """Denylist the access token and end its session, and the refresh token's if given."""
        user_id = access.user.public_id if access.user is not None else None
        session_id = access.claims.get("sid")
        if header_token and body_token and not hmac.compare_digest(header_token, body_token):
            audit.record("session.logout", "failure", user_id=user_id, reason="token_mismatch")
            raise TokenMismatch()
        ended: list[str] = []
        if refresh_token is not None:
            row = self.find_by_refresh_token(refresh_token)
            if row is None or access.user is None or row.session.user_id != access.user.id:
                db.session.rollback()
                audit.record("session.logout", "failure", user_id=user_id, reason="token_mismatch")
                raise TokenMismatch()
            if row.session.revoked_at is None:
                self._revoke(row.session, LOGOUT, now)
                ended.append(row.session.public_id)
        self.deny_access_token(access.claims, now)
        if session_id is not None:
            session = db.session.scalar(
                select(RefreshSession).where(RefreshSession.public_id == session_id)
            )
            if session is not None and session.revoked_at is None:
                self._revoke(session, LOGOUT, now)
                ended.append(session_id)
        db.session.flush()
        after_commit(self.revocations.token_revoked, access.jti, access.claims["exp"], now)
        after_commit(self.revocations.sessions_revoked, ended)
        after_commit(
            audit.record,
            "session.logout",
            "success",
            user_id=user_id,
            session_id=session_id,
            jti=access.jti,
        )

    def find_by_refresh_token(self, raw_refresh_token: str) -> RefreshToken | None:
        """Return the stored refresh token row for a presented secret, if any."""
        return db.session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == digest(raw_refresh_token))
        )

    def revoke_refresh_session(self, session: RefreshSession, now: datetime) -> None:
        """RFC 7009: a client revokes a refresh token, which ends its whole session."""
        # Read before the commit, which expires the rows.
        user_id, public_id, client_id = session.user.public_id, session.public_id, session.client_id
        if session.revoked_at is None:
            self._revoke(session, REVOKED_BY_CLIENT, now)
        db.session.flush()
        after_commit(self.revocations.sessions_revoked, [public_id])
        after_commit(
            audit.record,
            "token.revoked",
            "success",
            user_id=user_id,
            kind="refresh",
            client_id=client_id,
            session_id=public_id,
        )

    def revoke_access_token(self, claims: dict, now: datetime) -> None:
        """RFC 7009: a client revokes one access token, denylisted until it expires."""
        self.deny_access_token(claims, now)
        after_commit(self.revocations.token_revoked, claims["jti"], claims["exp"], now)
        after_commit(
            audit.record,
            "token.revoked",
            "success",
            # A user's token names its session; a client's token has no user.
            user_id=claims["sub"] if "sid" in claims else None,
            kind="access",
            client_id=claims["client_id"],
            session_id=claims.get("sid"),
            jti=claims["jti"],
        )

    def revoke_all_for_user(self, user: User, reason: str, now: datetime) -> list[str]:
        """Revoke every live session of the user and return their ids; the caller commits,
        then tells self.revocations."""
        return self._revoke_where(reason, now, RefreshSession.user_id == user.id)

    def revoke_matching(self, reason: str, now: datetime, *conditions: Any) -> list[str]:
        """Revoke the live sessions that match `conditions` (their access tokens stop too);
        the revocation cache is told once the caller commits. Returns their ids."""
        ended = self._revoke_where(reason, now, *conditions)
        after_commit(self.revocations.sessions_revoked, ended)
        return ended

    def _revoke_where(self, reason: str, now: datetime, *conditions: Any) -> list[str]:
        return list(
            db.session.scalars(
                update(RefreshSession)
                .where(*conditions, RefreshSession.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason=reason)
                .returning(RefreshSession.public_id)
                .execution_options(synchronize_session=False)
            )
        )

    def deny_access_token(self, claims: dict, now: datetime) -> None:
        """Put an access token's jti on the denylist until it expires; the caller commits.

        Two revocations of one token at once (a double-clicked logout) both insert: the one that
        comes second finds the row there and does nothing, instead of a unique-key error.
        """
        expires_at = datetime.fromtimestamp(claims["exp"], tz=now.tzinfo)
        insert_or_ignore = _DIALECT_INSERTS[db.session.get_bind().dialect.name]
        db.session.execute(
            insert_or_ignore(RevokedAccessToken)
            .values(jti=claims["jti"], expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=["jti"])
        )

    def _revoke(self, session: RefreshSession, reason: str, now: datetime) -> None:
        session.revoked_at = now
        session.revoked_reason = reason

    def _mint(
        self,
        session: RefreshSession | OpenedSession,
        user: User,
        now: datetime,
        refreshable: bool = True,
    ) -> TokenPair:
        raw = new_secret() if refreshable else None
        if raw is not None:
            # A Core INSERT: the row is never read back in this request: no ORM object needed.
            db.session.execute(
                _INSERT_TOKEN,
                {
                    "session_id": session.id,
                    "token_hash": digest(raw),
                    "created_at": now,
                    "expires_at": min(now + self.refresh_ttl, session.created_at + self.max_age),
                },
            )
        issued = self.access_tokens.issue(
            subject=user.public_id,
            client_id=session.client_id,
            scope=session.scope,
            now=now,
            session_id=session.public_id,
            audience=_audience_claim(session.audience),
        )
        return TokenPair(
            issued.token, raw, issued.expires_in, session.scope, user, session.public_id
        )


# The hot path's statements, built once (building them costs more than running them). The
# spend is a Core UPDATE: it needs none of the ORM's session synchronisation.
_tokens = RefreshToken.__table__
_sessions = RefreshSession.__table__
_SPEND = (
    update(_tokens)
    .where(
        _tokens.c.token_hash == bindparam("presented_hash"),
        _tokens.c.used_at.is_(None),
        _tokens.c.expires_at > bindparam("now"),
        _tokens.c.session_id.in_(
            select(_sessions.c.id).where(
                _sessions.c.revoked_at.is_(None), _sessions.c.client_id == bindparam("client_id")
            )
        ),
    )
    .values(used_at=bindparam("now"))
    .returning(_tokens.c.session_id)
)
_INSERT_TOKEN = insert(_tokens)
_INSERT_SESSION = insert(_sessions).returning(_sessions.c.id)
_CLAIM_GRACE = (
    update(_tokens)
    .where(_tokens.c.id == bindparam("token_id"), _tokens.c.grace_used_at.is_(None))
    .values(grace_used_at=bindparam("now"))
)
_SESSION_WITH_USER = (
    select(RefreshSession)
    .options(joinedload(RefreshSession.user))
    .where(RefreshSession.id == bindparam("session_id"))
)


def _audience_claim(stored: str | None) -> str | list[str] | None:
    """A session's audience as the `aud` claim (None: the server's own)."""
    if not stored:
        return None
    items = stored.split()
    return items[0] if len(items) == 1 else items


def _audit_fields(session: RefreshSession, client_id: str) -> dict[str, str]:
    """Whose session it is, read while the transaction is open (a rollback expires the rows)."""
    return {
        "user_id": session.user.public_id,
        "session_id": session.public_id,
        "client_id": client_id,
    }


def _refusal_reason(row: RefreshToken, client_id: str) -> str:
    if row.session.client_id != client_id:
        return "wrong_client"
    if row.session.revoked_at is not None:
        return "session_revoked"
    return "expired"
