"""Email-verification and password-reset tokens: random, single use, stored as digests."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update

from idp.errors import InvalidOneTimeToken
from idp.extensions import db
from idp.models import OneTimeToken, User
from idp.services.secret_tokens import digest, new_secret

VERIFY_EMAIL = "verify_email"
PASSWORD_RESET = "password_reset"

LIFETIMES = {
    VERIFY_EMAIL: timedelta(hours=48),
    PASSWORD_RESET: timedelta(hours=24),
}


def issue_one_time_token(user: User, purpose: str, now: datetime) -> str:
    """Stage a token for the user and return the secret to mail; the caller commits.

    The user's outstanding tokens of that purpose are spent: only the newest link works, so a
    mail the user asked to replace (or one that leaked) stops working.
    """
    if user.id is not None:  # a user being registered has no tokens yet
        _lock_user(user.id)
        _spend_all(user.id, purpose, now)
    raw = new_secret()
    db.session.add(
        OneTimeToken(
            user=user,
            purpose=purpose,
            token_hash=digest(raw),
            created_at=now,
            expires_at=now + LIFETIMES[purpose],
        )
    )
    return raw


def consume_one_time_token(raw: str, purpose: str, now: datetime) -> int:
    """Spend a token and return its user's id; spend the user's other tokens of that purpose too.

    The spend is one conditional UPDATE, so two requests racing with one token cannot both win.
    """
    token_hash = digest(raw)
    owner = db.session.scalar(
        select(OneTimeToken.user_id).where(
            OneTimeToken.token_hash == token_hash, OneTimeToken.purpose == purpose
        )
    )
    if owner is None:
        raise InvalidOneTimeToken()
    _lock_user(owner)
    result = db.session.execute(
        update(OneTimeToken)
        .where(
            OneTimeToken.token_hash == token_hash,
            OneTimeToken.purpose == purpose,
            OneTimeToken.used_at.is_(None),
            OneTimeToken.expires_at > now,
        )
        .values(used_at=now)
        .returning(OneTimeToken.user_id)
    )
    user_id = result.scalar_one_or_none()
    if user_id is None:
        raise InvalidOneTimeToken()
    _spend_all(user_id, purpose, now)
    return user_id


def _lock_user(user_id: int) -> None:
    """Take the user's row before touching their tokens (PostgreSQL; SQLite has one writer).

    Every change to a user's tokens queues here first. Without it, two requests presenting two
    different links of one account lock the two token rows in opposite orders and deadlock.
    NO KEY UPDATE: the lock does not block inserts of rows that reference the user.
    """
    db.session.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


def _spend_all(user_id: int, purpose: str, now: datetime) -> None:
    db.session.execute(
        update(OneTimeToken)
        .where(
            OneTimeToken.user_id == user_id,
            OneTimeToken.purpose == purpose,
            OneTimeToken.used_at.is_(None),
        )
        .values(used_at=now)
    )
