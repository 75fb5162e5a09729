"""Login sessions: refresh-token families with rotation and reuse detection (RFC 9700 4.14)."""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from idp.errors import InvalidRefreshToken, TokenMismatch
from idp.extensions import db
from idp.models import RefreshSession, RefreshToken, RevokedAccessToken, User
from idp.services.access_tokens import AccessToken, AccessTokenService
from idp.services.secret_tokens import digest, new_secret

log = logging.getLogger(__name__)

# Revocation reasons, kept on the session row.
LOGOUT = "logout"
REUSE_DETECTED = "reuse_detected"
PASSWORD_RESET = "password_reset"
REVOKED_BY_CLIENT = "revoked_by_client"

# What the /api/v1/auth facade grants to its own sessions.
API_SCOPE = "profile email"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    scope: str
    user: User


class SessionService:
    """Start, rotate and end refresh sessions; mint the access tokens that belong to them."""

    def __init__(
        self, access_tokens: AccessTokenService, refresh_ttl: int, reuse_grace: int
    ) -> None:
        self.access_tokens = access_tokens
        self.refresh_ttl = timedelta(seconds=refresh_ttl)
        self.reuse_grace = timedelta(seconds=reuse_grace)

    def start(self, user: User, client_id: str, scope: str, now: datetime) -> TokenPair:
        """Open a session for a freshly authenticated user and commit it."""
        session = RefreshSession(
            public_id=secrets.token_urlsafe(24),
            user=user,
            client_id=client_id,
            scope=scope,
            created_at=now,
        )
        db.session.add(session)
        pair = self._mint(session, user, now)
        db.session.commit()
        return pair

    def rotate(self, raw_refresh_token: str, client_id: str, now: datetime) -> TokenPair:
        """Spend a refresh token and return a new pair; a replayed token ends its session."""
        token_hash = digest(raw_refresh_token)
        live_sessions = select(RefreshSession.id).where(
            RefreshSession.revoked_at.is_(None), RefreshSession.client_id == client_id
        )
        # Spend first, with a single conditional UPDATE: of two racing requests exactly one
        # sees a row change. Writing before reading also keeps SQLite from a stale snapshot.
        spent = db.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == token_hash,
                RefreshToken.used_at.is_(None),
                RefreshToken.expires_at > now,
                RefreshToken.session_id.in_(live_sessions),
            )
            .values(used_at=now)
            .returning(RefreshToken.session_id)
        ).scalar_one_or_none()
        if spent is not None:
            session = db.session.get(RefreshSession, spent)
            if session is None or not session.user.is_active:
                db.session.rollback()
                raise InvalidRefreshToken()
            pair = self._mint(session, session.user, now)
            db.session.commit()
            return pair
        return self._reject_or_grace(token_hash, client_id, now)

    def _reject_or_grace(self, token_hash: str, client_id: str, now: datetime) -> TokenPair:
        row = db.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
        if row is None or row.used_at is None or row.session.client_id != client_id:
            # Unknown, expired, or from another client: nothing to learn, nothing to revoke.
            db.session.rollback()
            raise InvalidRefreshToken()
        session = row.session
        if session.revoked_at is not None:
            db.session.rollback()
            raise InvalidRefreshToken()
        in_grace = self.reuse_grace and row.used_at > now - self.reuse_grace
        if in_grace and row.expires_at > now and session.user.is_active:
            # Two tabs refreshing with one token at once: the late one gets a sibling token.
            pair = self._mint(session, session.user, now)
            db.session.commit()
            return pair
        self._revoke(session, REUSE_DETECTED, now)
        db.session.commit()
        log.warning(
            "refresh token reuse detected; session revoked",
            extra={"session": session.public_id, "user": session.user.public_id},
        )
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
        if header_token and body_token and not hmac.compare_digest(header_token, body_token):
            raise TokenMismatch()
        if refresh_token is not None:
            row = self.find_by_refresh_token(refresh_token)
            if row is None or access.user is None or row.session.user_id != access.user.id:
                db.session.rollback()
                raise TokenMismatch()
            if row.session.revoked_at is None:
                self._revoke(row.session, LOGOUT, now)
        self.deny_access_token(access.claims, now)
        session_id = access.claims.get("sid")
        if session_id is not None:
            session = db.session.scalar(
                select(RefreshSession).where(RefreshSession.public_id == session_id)
            )
            if session is not None and session.revoked_at is None:
                self._revoke(session, LOGOUT, now)
        db.session.commit()

    def find_by_refresh_token(self, raw_refresh_token: str) -> RefreshToken | None:
        """Return the stored refresh token row for a presented secret, if any."""
        return db.session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == digest(raw_refresh_token))
        )

    def revoke_session(self, session: RefreshSession, reason: str, now: datetime) -> None:
        """Revoke one session and commit."""
        if session.revoked_at is None:
            self._revoke(session, reason, now)
        db.session.commit()

    def revoke_all_for_user(self, user: User, reason: str, now: datetime) -> None:
        """Revoke every live session of the user; the caller commits."""
        db.session.execute(
            update(RefreshSession)
            .where(RefreshSession.user_id == user.id, RefreshSession.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )

    def deny_access_token(self, claims: dict, now: datetime) -> None:
        """Put an access token's jti on the denylist until it expires; the caller commits."""
        if db.session.get(RevokedAccessToken, claims["jti"]) is None:
            expires_at = datetime.fromtimestamp(claims["exp"], tz=now.tzinfo)
            db.session.add(RevokedAccessToken(jti=claims["jti"], expires_at=expires_at))

    def _revoke(self, session: RefreshSession, reason: str, now: datetime) -> None:
        session.revoked_at = now
        session.revoked_reason = reason

    def _mint(self, session: RefreshSession, user: User, now: datetime) -> TokenPair:
        db.session.flush()  # the session needs its id before a token can point at it
        raw = new_secret()
        db.session.add(
            RefreshToken(
                session_id=session.id,
                token_hash=digest(raw),
                created_at=now,
                expires_at=now + self.refresh_ttl,
            )
        )
        issued = self.access_tokens.issue(
            subject=user.public_id,
            client_id=session.client_id,
            scope=session.scope,
            now=now,
            session_id=session.public_id,
        )
        return TokenPair(issued.token, raw, issued.expires_in, session.scope, user)
