"""Purge rows nothing needs any more: expired denylist entries, spent credentials, old mails.

Every rule keeps a row while anything that depends on it could still succeed: a spent refresh
token stays until it would have expired anyway (reuse detection needs it), and a refresh token
row also stands for the access token minted with it, whose `sid` must keep resolving until that
access token has expired. Rows are deleted in batches, one commit per batch, so a large purge
never holds locks (or SQLite's single write lock) for long.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, or_, select

from idp.extensions import db
from idp.models import (
    OneTimeToken,
    OutboxMail,
    RefreshSession,
    RefreshToken,
    RevokedAccessToken,
)
from idp.models.outbox import FINISHED

# Slack for clocks that disagree between the host running the purge and the servers.
CLOCK_MARGIN = timedelta(minutes=5)


class MaintenanceService:
    """Delete what expired or was spent longer ago than a retention period."""

    def __init__(self, access_token_ttl: int, leeway: int) -> None:
        # How long an access token minted at some instant can still verify.
        self.access_token_lifetime = timedelta(seconds=access_token_ttl + leeway) + CLOCK_MARGIN
        self.leeway = timedelta(seconds=leeway) + CLOCK_MARGIN

    def purge(self, now: datetime, retention: timedelta, batch_size: int) -> dict[str, int]:
        """Delete purgeable rows and return how many went, per table (tokens before sessions)."""
        cutoff = now - retention
        minted_cutoff = min(cutoff, now - self.access_token_lifetime)
        old_revoked_sessions = select(RefreshSession.id).where(RefreshSession.revoked_at < cutoff)
        has_tokens = exists().where(RefreshToken.session_id == RefreshSession.id)
        counts = {}
        # The access token is refused by its `exp` anyway once it is past; retention adds nothing.
        counts["revoked_access_tokens"] = _delete_in_batches(
            RevokedAccessToken.jti, RevokedAccessToken.expires_at < now - self.leeway, batch_size
        )
        counts["one_time_tokens"] = _delete_in_batches(
            OneTimeToken.id,
            or_(OneTimeToken.used_at < cutoff, OneTimeToken.expires_at < cutoff),
            batch_size,
        )
        counts["refresh_tokens"] = _delete_in_batches(
            RefreshToken.id,
            or_(
                # Expired, spent or not: neither rotation nor reuse detection can match it.
                (RefreshToken.expires_at < cutoff) & (RefreshToken.created_at < minted_cutoff),
                # Its session ended long ago: presenting it fails with or without the row.
                RefreshToken.session_id.in_(old_revoked_sessions),
            ),
            batch_size,
        )
        # A session with no token left has none that could be refreshed, and no access token
        # of its own still alive (the tokens above outlive theirs).
        counts["refresh_sessions"] = _delete_in_batches(
            RefreshSession.id,
            or_(RefreshSession.revoked_at < cutoff, RefreshSession.created_at < minted_cutoff)
            & ~has_tokens,
            batch_size,
        )
        # Sent, dead or dropped mails: their sealed payload is already wiped; the row is history.
        counts["mail_outbox"] = _delete_in_batches(
            OutboxMail.id,
            OutboxMail.status.in_(FINISHED) & (OutboxMail.finished_at < cutoff),
            batch_size,
        )
        return counts


def _delete_in_batches(key: Any, condition: ColumnElement[bool], batch_size: int) -> int:
    """Delete the rows of key's table that match, batch_size at a time; return the count."""
    table = key.class_
    deleted = 0
    while True:
        batch = db.session.scalars(select(key).where(condition).limit(batch_size)).all()
        if batch:
            db.session.execute(delete(table).where(key.in_(batch)))
        db.session.commit()
        deleted += len(batch)
        if len(batch) < batch_size:
            return deleted
