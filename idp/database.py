"""Database engine set-up that differs per backend."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from flask import Flask, current_app
from sqlalchemy import Engine, Executable, Row, event
from sqlalchemy import exc as sa_exc

from idp.extensions import db, migrate

log = logging.getLogger(__name__)

MIGRATIONS_DIR = "migrations"
READ_ENGINE = "idp.read_engine"
# PostgreSQL errors that say "not now" rather than "not this statement": connection exceptions
# (class 08), too many connections, and a server shutting down, crashed or starting up.
_UNAVAILABLE_SQLSTATES = ("08", "53300", "57P01", "57P02", "57P03")
# SQLite primary result codes for the same: BUSY, LOCKED, IOERR, CANTOPEN.
_UNAVAILABLE_SQLITE_CODES = frozenset({5, 6, 10, 14})


def init_app(app: Flask, migrations_dir: str) -> None:
    """Bind SQLAlchemy and Flask-Migrate; give SQLite WAL, foreign keys and write locks."""
    db.init_app(app)
    # Runs before Flask-SQLAlchemy's own teardown (Flask runs them last registered first).
    app.teardown_appcontext(_remove_session)
    migrate.init_app(app, db, directory=migrations_dir, render_as_batch=True)
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine)
        else:
            _configure_postgresql(engine)
            # Same pool, no transaction: a lone SELECT needs no BEGIN and no ROLLBACK.
            app.extensions[READ_ENGINE] = engine.execution_options(isolation_level="AUTOCOMMIT")


def read_one(statement: Executable, params: dict[str, Any]) -> Row[Any] | None:
    """Run one read-only statement on the hot path and return its first row.

    On PostgreSQL it runs outside any transaction on a connection of its own: one round trip
    (plus the pool's pre-ping) instead of BEGIN, SELECT and ROLLBACK. On SQLite, whose
    transactions are local and cheap, it runs in the request's session.
    """
    engine = current_app.extensions.get(READ_ENGINE)
    if engine is None:
        return db.session.connection().execute(statement, params).first()
    with engine.connect() as connection:
        return connection.execute(statement, params).first()


def _remove_session(_error: BaseException | None) -> None:
    """End the request's session; a connection lost since the answer was made must not turn
    that answer into a 500 (Flask-SQLAlchemy's teardown lets the rollback's error escape)."""
    try:
        db.session.remove()
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        log.warning("database connection lost while ending a session (%s)", type(exc).__name__)
        db.session.registry.clear()


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        # A server shutting down or restarting (57P01 and friends) is a lost connection too,
        # though the dialect does not say so: have SQLAlchemy throw the connection (and the
        # pool's others) away instead of handing it back to the pool for a reset that fails.
        original = context.original_exception
        state = original.sqlstate if isinstance(original, psycopg.Error) else None
        if state is not None and state.startswith(_UNAVAILABLE_SQLSTATES):
            context.is_disconnect = True


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's own would be a deferred BEGIN).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Take the write lock at the start of every transaction. A deferred transaction that
        # reads and then writes fails at once with "database is locked" when another writer
        # committed in between; an immediate one waits its turn (busy_timeout) instead.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` (or what caused it) says the database cannot be reached right now.

    Only connectivity counts: a refused or lost connection, a pool with no connection to
    spare, a server shutting down. A constraint violation, a missing table or bad SQL is a
    fault of ours and stays a 500.
    """
    seen: BaseException | None = error
    while seen is not None:
        if _says_unavailable(seen):
            return True
        seen = seen.__cause__
    return False


def _says_unavailable(error: BaseException) -> bool:
    if isinstance(error, sa_exc.TimeoutError):  # QueuePool: no connection within pool_timeout
        return True
    if not isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
        return False
    if error.connection_invalidated:  # the dialect recognised a lost connection
        return True
    original = error.orig
    if isinstance(original, psycopg.Error):
        # No SQLSTATE: the client library itself failed (refused, reset, closed connection).
        state = original.sqlstate
        return state is None or state.startswith(_UNAVAILABLE_SQLSTATES)
    sqlite_code = getattr(original, "sqlite_errorcode", None)
    return sqlite_code is not None and (sqlite_code & 0xFF) in _UNAVAILABLE_SQLITE_CODES
