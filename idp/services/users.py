"""An admin's hold on accounts: list, show, disable, enable and sign out a user."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, select, update

from idp import audit
from idp.extensions import db
from idp.models import BrowserSession, RefreshSession, RefreshToken, User
from idp.services.accounts import canonical_email
from idp.services.sessions import SessionService
from idp.transaction import after_commit

# Revocation reasons, kept on the refresh and browser session rows.
DISABLED = "disabled"
ADMIN_SIGN_OUT = "admin_sign_out"

ACTIVE, UNVERIFIED = "active", "unverified"
EMAIL_MAX = 320  # the column's length
# Characters that can move the cursor, recolour or reorder what a terminal shows.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


class UserCommandError(Exception):
    """An admin named a user who does not exist."""


@dataclass(frozen=True)
class EndedSessions:
    refresh: int
    browser: int

    @property
    def total(self) -> int:
        return self.refresh + self.browser


@dataclass(frozen=True)
class UserDetails:
    user: User
    state: str
    live_refresh_sessions: int
    live_browser_sessions: int


def printable(text: str) -> str:
    """Escape the control, format and separator characters of text meant for a terminal."""
    # An address is typed by whoever registered it: printed raw, an escape sequence or a bidi
    # override in it could forge lines or recolour the admin's terminal.
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in _UNSAFE_CATEGORIES
        else ch
        for ch in text
    )


def state_of(user: User) -> str:
    """Return `disabled`, `unverified` or `active`."""
    if user.disabled_at is not None:
        return DISABLED
    if user.email_verified_at is None or not user.is_active:
        return UNVERIFIED
    return ACTIVE


def list_users() -> list[User]:
    """Return every user, oldest first."""
    return list(db.session.scalars(select(User).order_by(User.created_at, User.id)))


def find_user(email: str) -> User:
    """Return the account for an address in any case or spelling, or raise UserCommandError."""
    user = None
    # PostgreSQL refuses NUL in a text parameter (an error, not "no row"): no address has one.
    if "\x00" not in email and len(email) <= EMAIL_MAX:
        user = db.session.scalar(select(User).where(User.email_canonical == canonical_email(email)))
    if user is None:
        raise UserCommandError(f"no user with email {printable(email)}")
    return user


def describe_user(email: str, now: datetime) -> UserDetails:
    """Return a user with their state and how many of their sessions are still live."""
    user = find_user(email)
    refresh = db.session.scalar(
        select(func.count())
        .select_from(RefreshSession)
        .where(
            RefreshSession.user_id == user.id,
            RefreshSession.revoked_at.is_(None),
            # Live while one of its tokens can still be spent.
            exists().where(
                RefreshToken.session_id == RefreshSession.id,
                RefreshToken.used_at.is_(None),
                RefreshToken.expires_at > now,
            ),
        )
    )
    browser = db.session.scalar(
        select(func.count())
        .select_from(BrowserSession)
        .where(BrowserSession.user_id == user.id, BrowserSession.ended_at.is_(None))
    )
    return UserDetails(user, state_of(user), refresh or 0, browser or 0)


def disable_user(email: str, sessions: SessionService, now: datetime) -> EndedSessions | None:
    """Disable an account and end all its sessions and tokens; None if it was disabled already."""
    user = find_user(email)
    if user.disabled_at is not None:
        return None
    user.disabled_at = now
    # Access-token verification and refresh refuse an inactive user, whatever else they check.
    user.is_active = False
    ended = _end_everything(user, sessions, DISABLED, now)
    after_commit(
        audit.record,
        "user.disabled",
        "success",
        user_id=user.public_id,
        sessions=ended.refresh,
        browser_sessions=ended.browser,
    )
    return ended


def enable_user(email: str, now: datetime) -> bool:
    """Let a disabled account sign in again (its old sessions stay ended); False if not disabled."""
    user = find_user(email)
    if user.disabled_at is None:
        return False
    user.disabled_at = None
    user.is_active = user.email_verified_at is not None
    user.updated_at = now
    db.session.flush()
    after_commit(audit.record, "user.enabled", "success", user_id=user.public_id)
    return True


def sign_out_user(email: str, sessions: SessionService, now: datetime) -> EndedSessions:
    """End every session and access token of a user; they may sign in again."""
    user = find_user(email)
    ended = _end_everything(user, sessions, ADMIN_SIGN_OUT, now)
    after_commit(
        audit.record,
        "user.signed_out",
        "success",
        user_id=user.public_id,
        sessions=ended.refresh,
        browser_sessions=ended.browser,
    )
    return ended


def _end_everything(
    user: User, sessions: SessionService, reason: str, now: datetime
) -> EndedSessions:
    user.sessions_valid_after = now
    user.updated_at = now
    # Write the user's row first: it holds the row a concurrent login updates, so that login
    # either commits before the sessions below are read (and is ended) or waits and is refused.
    db.session.flush()
    refresh_ids = sessions.revoke_all_for_user(user, reason, now)
    browser = db.session.execute(
        update(BrowserSession)
        .where(BrowserSession.user_id == user.id, BrowserSession.ended_at.is_(None))
        .values(ended_at=now, ended_reason=reason)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.flush()
    revocations = sessions.revocations
    after_commit(revocations.sessions_revoked, refresh_ids)
    after_commit(revocations.user_sessions_ended, user.public_id, now)
    return EndedSessions(len(refresh_ids), browser)
