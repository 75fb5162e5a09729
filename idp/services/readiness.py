"""Readiness checks: can this process serve requests right now?

Each check answers "ok" or "failed" only; the cause goes to the log, never to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis
from sqlalchemy import text

from idp.extensions import db
from idp.services.keys import KeyStore

log = logging.getLogger(__name__)

OK = "ok"
FAILED = "failed"
# A probe must answer before the orchestrator gives up on it.
REDIS_TIMEOUT = 2.0


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str]


class ReadinessService:
    """Check the database, Redis (when configured) and the signing key."""

    def __init__(self, keys: KeyStore, redis_url: str | None) -> None:
        self.keys = keys
        self._redis = (
            redis.Redis.from_url(
                redis_url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
            )
            if redis_url
            else None
        )

    def check(self) -> Readiness:
        """Run every check; ready only when all of them pass."""
        checks: dict[str, Callable[[], object]] = {"database": self._ping_database}
        if self._redis is not None:
            checks["redis"] = self._redis.ping
        checks["signing_key"] = self.keys.signing_key
        results = {name: _run(name, check) for name, check in checks.items()}
        return Readiness(all(result == OK for result in results.values()), results)

    def _ping_database(self) -> None:
        # A connection of its own, returned to the pool at once: the probe never touches the
        # request's session or leaves a transaction open.
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))


def _run(name: str, check: Callable[[], object]) -> str:
    try:
        check()
    except Exception as exc:  # any failure means "not ready"; the probe itself must not crash
        log.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
        return FAILED
    return OK
