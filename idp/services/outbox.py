"""The transactional mail outbox: a mail is a row written in the transaction that needs it.

A row is committed together with the token its link carries, so there is never a token without
its mail nor a mail without its token. Delivery happens after the commit, in a background job of
the process that wrote the row and, for whatever that misses (an SMTP failure, a process killed
in between), in `flask --app wsgi mail send-pending`.

Delivery is at most once per row: a sender claims the row (pending -> sending) with one
conditional UPDATE before it talks to SMTP, and only a failure SMTP reported puts it back to
pending, with exponential back-off. A sender that dies mid-conversation, or loses the connection
after handing the message over (the server may have taken it), leaves the row in `sending`,
which `mail status` reports as in doubt and nothing retries. After `max_attempts`
failures, or a permanent SMTP refusal, or once its link has expired unsent, a row is dead: logged
at error level and in the audit log, and counted by `mail status`.

"Forgot password" and "resend verification" must answer the same whoever owns the address, so
their row is written as `requested` with the address as typed; a resolver looks the account up
after the answer, issuing the token and sealing the mail in one transaction (or dropping the row).

The per-address cap (IDP_MAILS_PER_ADDRESS, counted per kind of mail) is decided by the resolver
before it issues anything: a request over the cap issues no token and spends none, so nobody can
kill the link a user holds by asking for more. A user's older links are spent only when a newer
one is handed to SMTP (one_time_tokens.spend_superseded, in the transaction that marks it sent).

The template context (with the live token) is sealed with AES-GCM under IDP_SECRET_KEY and
wiped when the row finishes: the token exists in clear nowhere else, not even in the database.
"""

from __future__ import annotations

import logging
import smtplib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from idp import audit, metrics
from idp.clock import utcnow
from idp.extensions import db
from idp.models import OneTimeToken, OutboxMail
from idp.models.outbox import DEAD, DROPPED, PENDING, REQUESTED, SENDING, SENT, STATUSES
from idp.services import one_time_tokens as ott
from idp.services.mail import MailMaybeSent, MailService, OutgoingMail
from idp.services.sealing import Sealer, Unsealable
from idp.services.throttle import Throttle

log = logging.getLogger(__name__)

# Back-off doubles from the configured first delay up to this.
MAX_RETRY_DELAY = timedelta(hours=1)
# A row claimed longer ago than this by a sender that never reported back is in doubt.
IN_DOUBT_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class Resolution:
    """What a resolver found for a requested mail: where it goes and what it says."""

    to: str
    context: dict[str, Any]
    expires_at: datetime | None = None
    # The one-time tokens whose links the mail carries, staged in the session.
    tokens: tuple[OneTimeToken, ...] = ()


class MailCapped(Exception):
    """The address has had its share of this kind of mail for now (IDP_MAILS_PER_ADDRESS)."""


# Looks the account up, asks `Outbox.admit` before issuing anything, stages any token in the
# session (uncommitted) and returns the mail; None when there is nothing to send.
Resolver = Callable[[str, datetime], Resolution | None]


@dataclass(frozen=True)
class _Claimed:
    """A row this sender claimed: what it needs to send it."""

    message: str
    to: str
    payload: bytes
    attempts: int
    expires_at: datetime | None


@dataclass(frozen=True)
class _Refusal:
    """Why SMTP did not take a mail: an error code, whether for good, or that nobody knows."""

    error: str
    permanent: bool
    maybe_sent: bool = False


@dataclass(frozen=True)
class OutboxStatus:
    counts: dict[str, int]
    due: int
    in_doubt: int
    oldest_unsent: datetime | None
    recent_dead: list[OutboxMail]


class Outbox:
    """Queue mails with the change that causes them; deliver them once, after the commit."""

    def __init__(
        self,
        mail: MailService,
        sealer: Sealer,
        throttle: Throttle,
        *,
        max_attempts: int,
        retry_delay: int,
    ) -> None:
        self.mail = mail
        self.sealer = sealer
        self.throttle = throttle
        self.max_attempts = max_attempts
        self.retry_delay = timedelta(seconds=retry_delay)
        self.resolvers: dict[str, Resolver] = {}

    # -- writing rows (the caller commits) -------------------------------------------------

    def enqueue(
        self,
        message: str,
        to: str,
        context: dict[str, Any],
        now: datetime,
        expires_at: datetime | None = None,
        tokens: tuple[OneTimeToken, ...] = (),
    ) -> OutboxMail:
        """Stage a mail in the caller's transaction; flushed, so its id is known.

        Not capped: the caller decides (registration mails an address once per account).
        """
        row = OutboxMail(
            message=message,
            recipient=to,
            payload=self.sealer.seal(context, _binding(message, to)),
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            expires_at=expires_at,
            created_at=now,
        )
        db.session.add(row)
        db.session.flush()
        ott.attach_to_mail(tokens, row.id)
        return row

    def admit(self, message: str, address: str) -> None:
        """Count one mail of this kind to the (canonical) address; MailCapped over the cap.

        Atomic across workers and instances where the counters are shared (Redis), so two
        resolvers racing for the last slot cannot both win it.
        """
        if not self.throttle.hit(f"{message} {address}"):
            metrics.count_mail_cap_refusal()
            raise MailCapped()

    def request(self, message: str, address: str, now: datetime) -> OutboxMail:
        """Stage a mail whose account a resolver looks up later; flushed, so its id is known."""
        if message not in self.resolvers:
            raise ValueError(f"no resolver for {message!r}")
        row = OutboxMail(
            message=message,
            recipient=address,
            status=REQUESTED,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        db.session.add(row)
        db.session.flush()
        return row

    # -- delivering -------------------------------------------------------------------------

    def process(self, mail_id: int, now: datetime | None = None) -> str:
        """Resolve the row if it is a request, then deliver it if due; return its status."""
        now = now or utcnow()
        status = self._resolve(mail_id, now)
        if status == PENDING:
            status = self._deliver(mail_id, now)
        return status

    def send_pending(self, now: datetime, limit: int = 100) -> Counter[str]:
        """Process up to `limit` due rows, oldest first; count the outcomes by status."""
        due = db.session.scalars(
            select(OutboxMail.id).where(_is_due(now)).order_by(OutboxMail.id).limit(limit)
        ).all()
        db.session.commit()
        outcomes: Counter[str] = Counter()
        started = utcnow()
        for mail_id in due:
            # The clock moves on during a long batch (a slow SMTP server): each row is claimed
            # at its own time, or a mail still in flight would look claimed long ago.
            outcomes[self.process(mail_id, now + (utcnow() - started))] += 1
        return outcomes

    def status(self, now: datetime, dead_shown: int = 10) -> OutboxStatus:
        """Summarise the queue for `mail status`."""
        counts = dict.fromkeys(STATUSES, 0)
        for status, count in db.session.execute(
            select(OutboxMail.status, func.count()).group_by(OutboxMail.status)
        ):
            counts[status] = count
        due = db.session.scalar(select(func.count()).where(_is_due(now))) or 0
        in_doubt = (
            db.session.scalar(
                select(func.count()).where(
                    OutboxMail.status == SENDING, OutboxMail.claimed_at < now - IN_DOUBT_AFTER
                )
            )
            or 0
        )
        oldest = db.session.scalar(
            select(func.min(OutboxMail.created_at)).where(
                OutboxMail.status.in_((REQUESTED, PENDING))
            )
        )
        dead = db.session.scalars(
            select(OutboxMail)
            .where(OutboxMail.status == DEAD)
            .order_by(OutboxMail.finished_at.desc())
            .limit(dead_shown)
        ).all()
        db.session.commit()
        return OutboxStatus(counts, due, in_doubt, oldest, list(dead))

    # -- the steps --------------------------------------------------------------------------

    def _resolve(self, mail_id: int, now: datetime) -> str:
        row = db.session.get(OutboxMail, mail_id)
        if row is None:
            db.session.rollback()
            return "missing"
        status, message, address = row.status, row.message, row.recipient
        if status != REQUESTED:
            db.session.rollback()
            return status
        values: dict[str, Any]
        try:
            found, why_not = self.resolvers[message](address, now), "no_recipient"
        except MailCapped:
            # Silent: the requester's answer did not depend on it. Nothing was issued.
            log.warning("mail %s (outbox %d) dropped: per-address limit reached", message, mail_id)
            db.session.rollback()
            found, why_not = None, "throttled"
        if found is None:
            values = {"status": DROPPED, "finished_at": now, "last_error": why_not}
        else:
            ott.attach_to_mail(found.tokens, mail_id)
            values = {
                "status": PENDING,
                "recipient": found.to,
                "payload": self.sealer.seal(found.context, _binding(message, found.to)),
                "expires_at": found.expires_at,
                "next_attempt_at": now,
            }
        # Whoever moves the row out of `requested` first keeps its token; a racing resolver
        # rolls back the token it staged.
        moved = db.session.execute(
            update(OutboxMail)
            .where(OutboxMail.id == mail_id, OutboxMail.status == REQUESTED)
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not moved:
            db.session.rollback()
            return PENDING  # another sender resolved it; claiming decides who delivers
        db.session.commit()
        return values["status"]

    def _deliver(self, mail_id: int, now: datetime) -> str:
        claimed = self._claim(mail_id, now)
        if claimed is None:
            return PENDING  # not due yet, or another sender has it
        if claimed.expires_at is not None and claimed.expires_at <= now:
            return self._finish(mail_id, DEAD, "expired", now, claimed.message)
        superseded = ott.carries_a_dead_token(mail_id, now)
        db.session.commit()  # no transaction (on SQLite: the write lock) held while SMTP talks
        if superseded:
            # A newer mail got through first, or a link was used: this one would deliver a
            # dead link.
            return self._finish(mail_id, DROPPED, "superseded", now)
        try:
            context = self.sealer.open(claimed.payload, _binding(claimed.message, claimed.to))
        except Unsealable:
            # Sealed under another IDP_SECRET_KEY, or tampered with: it can never be sent.
            return self._finish(mail_id, DEAD, "unsealable", now, claimed.message)
        try:
            mail = self.mail.compose(claimed.message, claimed.to, context)
        except Exception:
            # A bug (a broken template), not an outage: retrying would fail the same way.
            log.exception("mail %s (outbox %d) could not be composed", claimed.message, mail_id)
            return self._finish(mail_id, DEAD, "compose_failed", now, claimed.message)
        refusal = self._hand_over(mail)
        if refusal is not None and refusal.maybe_sent:
            # At most once: the server may have taken it, so the row stays claimed, in doubt.
            return self._in_doubt(mail_id, claimed.message, refusal.error)
        if refusal is not None:
            return self._failed(
                mail_id, claimed.message, claimed.attempts, refusal.error, now, refusal.permanent
            )
        sent_at = utcnow()
        # Handed over: from now on only this mail's links work, committed with the SENT mark.
        ott.spend_superseded(
            mail_id, sent_at, claimed_at=now, in_flight_since=sent_at - IN_DOUBT_AFTER
        )
        return self._finish(mail_id, SENT, None, sent_at)

    def _claim(self, mail_id: int, now: datetime) -> _Claimed | None:
        """Move a due row from pending to sending, once: None if not due or another has it."""
        row = db.session.execute(
            update(OutboxMail)
            .where(
                OutboxMail.id == mail_id,
                OutboxMail.status == PENDING,
                OutboxMail.next_attempt_at <= now,
            )
            .values(status=SENDING, attempts=OutboxMail.attempts + 1, claimed_at=now)
            .returning(
                OutboxMail.message,
                OutboxMail.recipient,
                OutboxMail.payload,
                OutboxMail.attempts,
                OutboxMail.expires_at,
            )
            .execution_options(synchronize_session=False)
        ).one_or_none()
        db.session.commit()
        return None if row is None else _Claimed(*row)

    def _hand_over(self, mail: OutgoingMail) -> _Refusal | None:
        """Give the mail to SMTP; None when it was taken, else why not (or that nobody knows)."""
        try:
            self.mail.send(mail)
        except MailMaybeSent as exc:
            return _Refusal(type(exc.__cause__).__name__, False, maybe_sent=True)
        except smtplib.SMTPResponseException as exc:
            return _Refusal(f"smtp_{exc.smtp_code}", exc.smtp_code >= 500)
        except smtplib.SMTPRecipientsRefused as exc:
            # Refused at RCPT ("550 no such user"): a permanent refusal like any other 5xx.
            code = min(code for code, _reply in exc.recipients.values())
            return _Refusal(f"smtp_{code}", code >= 500)
        except (OSError, smtplib.SMTPException) as exc:
            return _Refusal(type(exc).__name__, False)
        return None

    def _failed(
        self, mail_id: int, message: str, attempts: int, error: str, now: datetime, permanent: bool
    ) -> str:
        # The link is a secret: log what failed, never the mail.
        if permanent or attempts >= self.max_attempts:
            return self._finish(mail_id, DEAD, error, now, message)
        delay = min(self.retry_delay * 2 ** (attempts - 1), MAX_RETRY_DELAY)
        log.warning(
            "mail %s (outbox %d) not delivered (%s), attempt %d; next try in %ds",
            message,
            mail_id,
            error,
            attempts,
            delay.total_seconds(),
        )
        db.session.execute(
            update(OutboxMail)
            .where(OutboxMail.id == mail_id, OutboxMail.status == SENDING)
            .values(status=PENDING, last_error=error, next_attempt_at=now + delay)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        return PENDING

    def _in_doubt(self, mail_id: int, message: str, error: str) -> str:
        log.warning(
            "mail %s (outbox %d): connection lost after hand-over (%s); not retried",
            message,
            mail_id,
            error,
        )
        db.session.execute(
            update(OutboxMail)
            .where(OutboxMail.id == mail_id, OutboxMail.status == SENDING)
            .values(last_error=f"in_doubt_{error}", payload=None)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        return SENDING

    def _finish(
        self, mail_id: int, status: str, error: str | None, now: datetime, message: str = ""
    ) -> str:
        db.session.execute(
            update(OutboxMail)
            .where(OutboxMail.id == mail_id, OutboxMail.status == SENDING)
            .values(status=status, last_error=error, finished_at=now, payload=None)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        if status == DEAD:
            log.error("mail %s (outbox %d) is dead: %s", message, mail_id, error)
            audit.record("mail.dead", "failure", mail_id=mail_id, message=message, reason=error)
        return status


def _binding(message: str, to: str) -> str:
    # A sealed payload opens only in a row for the same mail and address: it cannot be moved
    # to another row to send someone else's reset link to an attacker's address.
    return f"{message}\n{to}"


def _is_due(now: datetime) -> Any:
    return or_(
        OutboxMail.status == REQUESTED,
        and_(OutboxMail.status == PENDING, OutboxMail.next_attempt_at <= now),
    )
