"""The mail outbox: every mail the server owes someone, written with the change that caused it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.clock import utcnow
from idp.extensions import db
from idp.models.types import UTCDateTime

# What a row is waiting for, in the order a row moves through them.
# A same-answer request ("forgot password"): the account is not looked up yet.
REQUESTED = "requested"
PENDING = "pending"  # sealed and ready; due at next_attempt_at
SENDING = "sending"  # claimed by a sender; never claimed again (at most once)
SENT = "sent"
DEAD = "dead"  # given up: too many failures, refused for good, or its link expired unsent
# Nothing to send: no such account, the per-address limit was reached (nothing was issued), or
# its links were superseded or used while it waited.
DROPPED = "dropped"
STATUSES = (REQUESTED, PENDING, SENDING, SENT, DEAD, DROPPED)
FINISHED = (SENT, DEAD, DROPPED)


class OutboxMail(db.Model):
    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_status_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The template under templates/email/.
    message: Mapped[str] = mapped_column(String(32), nullable=False)
    recipient: Mapped[str] = mapped_column(String(320), nullable=False)
    # The template's context (links with live tokens) sealed with AES-GCM; wiped once finished.
    payload: Mapped[bytes | None] = mapped_column(LargeBinary())
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # The link inside stops working then: a mail still unsent by that time is not sent at all.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Why the last attempt failed (an exception class or an SMTP code), never the message.
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
