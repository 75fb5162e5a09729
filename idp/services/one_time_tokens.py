"""Email-verification and password-reset tokens: random, single use, stored as digests.

A token is issued together with the mail that carries its link, and the user's older tokens of
that purpose are spent only once that mail has been handed to SMTP (`spend_superseded`): a
request that never turns into a delivered mail (over the per-address cap, an SMTP failure)
cannot kill the link the user already holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update

from idp.errors import InvalidOneTimeToken
from idp.extensions import db
from idp.models import OneTimeToken, OutboxMail, User
from idp.models.outbox import SENDING, SENT
from idp.services.secret_tokens import digest, new_secret

VERIFY_EMAIL = "verify_email"
PASSWORD_RESET = "password_reset"

LIFETIMES = {
    VERIFY_EMAIL: timedelta(hours=48),
    PASSWORD_RESET: timedelta(hours=24),
}


@dataclass(frozen=True)
class IssuedToken:
    """A token staged in the session: the secret to mail, and its (uncommitted) row."""

    raw: str
    row: OneTimeToken


def issue_one_time_token(user: User, purpose: str, now: datetime) -> IssuedToken:
    """Stage a token for the user and return it; the caller commits.

    The user's outstanding tokens stay valid: the mail that carries this one spends them when
    it is handed over (see `spend_superseded`).
    """
    if user.id is not None:  # a user being registered has no row to lock yet
        lock_user(user.id)
    raw = new_secret()
    row = OneTimeToken(
        user=user,
        purpose=purpose,
        token_hash=digest(raw),
        created_at=now,
        expires_at=now + LIFETIMES[purpose],
    )
    db.session.add(row)
    return IssuedToken(raw, row)


def attach_to_mail(tokens: Iterable[OneTimeToken], mail_id: int) -> None:
    """Record which outbox mail carries these staged tokens."""
    for token in tokens:
        token.mail_id = mail_id


def spend_superseded(
    mail_id: int, now: datetime, claimed_at: datetime, in_flight_since: datetime
) -> int:
    """The mail `mail_id` was handed to SMTP: spend its user's older tokens of the same purposes.

    Only the newest link of each purpose works once it is on its way, so a mail the user asked
    to replace (or one that leaked) stops working. The last mail a user receives must never
    carry a dead link, so a sibling mail whose flight overlapped this one's (still in flight,
    or handed over after this one was claimed at `claimed_at`: either may arrive last) keeps
    its links. A sibling claimed before `in_flight_since` and never finished is in doubt, not
    in flight. Returns how many tokens were spent.
    """
    carried = _carried(mail_id)
    overlapping = select(OutboxMail.id).where(
        or_(
            and_(OutboxMail.status == SENDING, OutboxMail.claimed_at > in_flight_since),
            and_(OutboxMail.status == SENT, OutboxMail.finished_at >= claimed_at),
        )
    )
    spent = 0
    for token_id, user_id, purpose in carried:
        spent += db.session.execute(
            update(OneTimeToken)
            .where(
                OneTimeToken.user_id == user_id,
                OneTimeToken.purpose == purpose,
                OneTimeToken.used_at.is_(None),
                OneTimeToken.id < token_id,
                or_(OneTimeToken.mail_id.is_(None), OneTimeToken.mail_id.not_in(overlapping)),
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
    return spent


def carries_a_dead_token(mail_id: int, now: datetime) -> bool:
    """Whether a link the mail carries is already used or expired: sending it would mislead.

    That happens to a mail still retrying when a newer one got through first. One dead link is
    enough to drop the whole mail (a verification mail carries two): a mail that arrives with a
    dead link is worse than none, and nothing it would have superseded was spent, so the links
    the user already holds still work.
    Asked once the mail is claimed, under its user's lock, so that this and a sibling's
    `spend_superseded` see each other in one order: either this mail is in flight when the
    sibling spends (and keeps its links), or the sibling's spend is seen here.
    """
    if not _carried(mail_id):
        return False
    rows = db.session.execute(
        select(OneTimeToken.used_at, OneTimeToken.expires_at).where(OneTimeToken.mail_id == mail_id)
    ).all()
    return any(used is not None or expires <= now for used, expires in rows)


def _carried(mail_id: int) -> list[Any]:
    """The (id, user id, purpose) of the tokens a mail carries, with their user's row locked."""
    carried = db.session.execute(
        select(OneTimeToken.id, OneTimeToken.user_id, OneTimeToken.purpose).where(
            OneTimeToken.mail_id == mail_id
        )
    ).all()
    if carried:
        lock_user(carried[0].user_id)
    return list(carried)


def is_live(raw: str, purpose: str, now: datetime) -> bool:
    """Whether a token could be spent now; spends nothing (a page shows a dead link at once)."""
    if not raw or len(raw) > 128 or "\x00" in raw:
        return False
    return (
        db.session.scalar(
            select(OneTimeToken.id).where(
                OneTimeToken.token_hash == digest(raw),
                OneTimeToken.purpose == purpose,
                OneTimeToken.used_at.is_(None),
                OneTimeToken.expires_at > now,
            )
        )
        is not None
    )


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
    lock_user(owner)
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


def lock_user(user_id: int) -> None:
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
