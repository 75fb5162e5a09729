"""Browser sessions: the sign-in a hosted page's cookie points at, for single sign-on.

The cookie holds a 256-bit random value; only its SHA-256 is stored. Every sign-in gets a new
session and a new cookie value (no fixation). A session ends when the user signs out, when its
idle or absolute lifetime runs out, when the password is reset, or when an admin disables or
signs out the user; ending it also ends the refresh tokens issued through it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from idp import audit
from idp.extensions import db
from idp.models import BrowserSession, RefreshSession, User
from idp.services.secret_tokens import digest, new_secret
from idp.services.sessions import SessionService
from idp.transaction import after_commit

COOKIE_MAX = 64  # a cookie value longer than ours is not one of ours
SIGNED_OUT = "signed_out"
REPLACED = "replaced"
USER_AGENT_MAX = 200
# How stale last_seen_at may get before a request writes it again (a write per page is waste).
TOUCH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class StartedSession:
    session: BrowserSession
    cookie_value: str  # for the Set-Cookie header, never stored


class BrowserSessionService:
    """Start, find and end the hosted pages' sign-ins."""

    def __init__(self, sessions: SessionService, idle: int, max_age: int) -> None:
        self.sessions = sessions
        self.idle = timedelta(seconds=idle)
        self.max_age = timedelta(seconds=max_age)

    def start(
        self, user: User, now: datetime, user_agent: str | None, source: str | None
    ) -> StartedSession:
        """Open a session for a user who just proved their password; the caller commits."""
        value = new_secret()
        session = BrowserSession(
            public_id=secrets.token_urlsafe(24),
            cookie_hash=digest(value),
            user=user,
            created_at=now,
            auth_time=now,
            last_seen_at=now,
            user_agent=(user_agent or "")[:USER_AGENT_MAX] or None,
            source=source,
        )
        db.session.add(session)
        db.session.flush()
        after_commit(
            audit.record,
            "browser_session.started",
            "success",
            user_id=user.public_id,
            session_id=session.public_id,
        )
        return StartedSession(session, value)

    def find(self, cookie_value: str | None, now: datetime) -> BrowserSession | None:
        """Return the live session a cookie points at, or None (expired, ended, or its user
        disabled, or signed out everywhere since)."""
        if not cookie_value or len(cookie_value) > COOKIE_MAX:
            return None
        session = db.session.scalar(
            select(BrowserSession).where(BrowserSession.cookie_hash == digest(cookie_value))
        )
        if session is None or not self._is_live(session, now):
            return None
        if now - session.last_seen_at > TOUCH_EVERY:
            session.last_seen_at = now
        return session

    def _is_live(self, session: BrowserSession, now: datetime) -> bool:
        user = session.user
        valid_after = user.sessions_valid_after
        return (
            session.ended_at is None
            and now - session.created_at < self.max_age
            and now - session.last_seen_at < self.idle
            and user.is_active
            and user.disabled_at is None
            and (valid_after is None or session.auth_time >= valid_after)
        )

    def replace(self, previous: BrowserSession, started: BrowserSession, now: datetime) -> None:
        """A new sign-in in a browser that had one; the caller commits.

        The same user signing in again (prompt=login, max_age) keeps the apps they use: their
        refresh sessions move to the new browser session. Another user's sign-in ends the
        previous one with everything issued through it.
        """
        if previous.user_id != started.user_id:
            self.end(previous, REPLACED, now)
            return
        db.session.execute(
            update(RefreshSession)
            .where(
                RefreshSession.browser_session_id == previous.id,
                RefreshSession.revoked_at.is_(None),
            )
            .values(browser_session_id=started.id)
            .execution_options(synchronize_session=False)
        )
        self.end(previous, REPLACED, now)

    def end(self, session: BrowserSession, reason: str, now: datetime) -> None:
        """End a session and the refresh sessions opened through it; the caller commits."""
        if session.ended_at is None:
            session.ended_at = now
            session.ended_reason = reason
        self.sessions.revoke_matching(reason, now, RefreshSession.browser_session_id == session.id)
        db.session.flush()
        after_commit(
            audit.record,
            "browser_session.ended",
            "success",
            user_id=session.user.public_id,
            session_id=session.public_id,
            reason=reason,
        )
