"""Readiness checks: can this process serve requests right now?

Each check answers "ok" or "failed" only; the cause goes to the log, never to the caller.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from idp import metrics
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


class SchemaBehind(Exception):
    """The database is not at the migrations' head (never migrated, or not yet upgraded)."""


class ReadinessService:
    """Check the database and its schema, Redis (when configured) and the signing key."""

    def __init__(self, keys: KeyStore, redis_url: str | None, migrations_dir: str) -> None:
        self.keys = keys
        self.schema_head = migrations_head(Path(migrations_dir) / "versions")
        # Once the schema is seen at the head it stays there for this process's life (a
        # migration adds, it does not take away); until then every probe looks again.
        self._schema_ok = False
        self._redis = (
            redis.Redis.from_url(
                redis_url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
            )
            if redis_url
            else None
        )

    def check(self) -> Readiness:
        """Run every check; ready only when all of them pass."""
        checks: dict[str, Callable[[], object]] = {
            "database": self._ping_database,
            "schema": self._check_schema,
        }
        if self._redis is not None:
            checks["redis"] = self._ping_redis
        checks["signing_key"] = self.keys.signing_key
        results = {name: _run(name, check) for name, check in checks.items()}
        return Readiness(all(result == OK for result in results.values()), results)

    def _ping_redis(self) -> None:
        assert self._redis is not None
        try:
            self._redis.ping()
        except redis.RedisError:
            metrics.count_redis_error("readiness")
            raise

    def _ping_database(self) -> None:
        # A connection of its own, returned to the pool at once: the probe never touches the
        # request's session or leaves a transaction open.
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def _check_schema(self) -> None:
        if self._schema_ok:
            return
        with db.engine.connect() as connection:
            current = schema_version(connection)
        if current != self.schema_head:
            raise SchemaBehind(
                f"database schema at {current}, migrations at {self.schema_head}: "
                "run `flask --app wsgi db upgrade`"
            )
        self._schema_ok = True


_REVISION = re.compile(r"^revision\s*=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*=\s*[\"']([^\"']+)[\"']", re.MULTILINE)


def schema_version(connection: Connection) -> str | None:
    """The revision the database was migrated to, None if it never was.

    No Alembic in a serving process (it costs every worker memory): its table is read.
    """
    try:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except ProgrammingError:  # PostgreSQL: no such table
        connection.rollback()
        return None
    except OperationalError as exc:  # SQLite says "no such table" this way
        if "no such table" not in str(exc):
            raise
        connection.rollback()
        return None


def migrations_head(versions_dir: Path) -> str:
    """The newest revision among the migration scripts: the one no other script revises."""
    revisions, parents = set(), set()
    for script in versions_dir.glob("*.py"):
        source = script.read_text()
        found = _REVISION.search(source)
        if found:
            revisions.add(found.group(1))
        parent = _DOWN_REVISION.search(source)
        if parent:
            parents.add(parent.group(1))
    heads = revisions - parents
    if len(heads) != 1:
        raise ValueError(f"migrations in {versions_dir} have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


def _run(name: str, check: Callable[[], object]) -> str:
    try:
        check()
    except Exception as exc:  # any failure means "not ready"; the probe itself must not crash
        log.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
        return FAILED
    return OK
