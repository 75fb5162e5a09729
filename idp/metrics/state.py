"""Gauges read at scrape time: the mail outbox and the signing keys.

They describe the shared state of every worker and instance (the database, the keys folder),
so they are read when Prometheus asks, by whichever process answers, instead of being counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from idp.clock import utcnow
from idp.models.outbox import PENDING, REQUESTED, STATUSES, OutboxMail
from idp.services.keys import ACTIVE, PUBLISHED, KeyStore

log = logging.getLogger(__name__)

# Rows waiting to be sent: not yet claimed by a sender.
WAITING = (REQUESTED, PENDING)
_OUTBOX = select(OutboxMail.status, func.count(), func.min(OutboxMail.created_at)).group_by(
    OutboxMail.status
)


class StateCollector(Collector):
    """Read the outbox (through an engine of its own, idp.database.one_off_engine) and the key
    store when a scrape asks."""

    def __init__(self, engine: Engine, keys: KeyStore) -> None:
        self._engine = engine
        self._keys = keys

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        yield from self._signing_keys(now)
        yield from self._outbox(now)

    def _signing_keys(self, now: datetime) -> Iterator[Metric]:
        try:
            infos = self._keys.list_keys()
        except (OSError, ValueError, KeyError) as exc:
            log.warning("metrics: the keys folder could not be read (%s)", type(exc).__name__)
            return
        published = GaugeMetricFamily(
            "idp_signing_keys_published", "Keys in the JWKS document (staged, active, verify-only)"
        )
        published.add_metric([], sum(1 for info in infos if info.status in PUBLISHED))
        yield published
        active = [info for info in infos if info.status == ACTIVE]
        if active:
            age = GaugeMetricFamily(
                "idp_signing_key_age_seconds", "Age of the key that signs new tokens"
            )
            created = datetime.fromisoformat(active[0].created_at)
            age.add_metric([], max(0.0, (now - created).total_seconds()))
            yield age

    def _outbox(self, now: datetime) -> Iterator[Metric]:
        try:
            with self._engine.connect() as connection:
                rows = connection.execute(_OUTBOX).all()
        except SQLAlchemyError as exc:
            # The outbox gauges are absent from this scrape; the app's requests count the
            # database's errors (idp_database_errors_total).
            log.warning("metrics: the mail outbox could not be read (%s)", type(exc).__name__)
            return
        counts = dict.fromkeys(STATUSES, 0)
        oldest: datetime | None = None
        for status, count, created in rows:
            counts[status] = count
            if status in WAITING and created is not None:
                oldest = created if oldest is None else min(oldest, created)
        messages = GaugeMetricFamily(
            "idp_mail_outbox_messages", "Mails in the outbox, by status", labels=["status"]
        )
        for status, count in counts.items():
            messages.add_metric([status], count)
        yield messages
        waiting = GaugeMetricFamily(
            "idp_mail_outbox_oldest_pending_age_seconds",
            "Age of the oldest mail waiting to be sent (requested or pending); 0 when none waits",
        )
        waiting.add_metric([], 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()))
        yield waiting
