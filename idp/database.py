"""Database engine set-up that differs per backend."""

from __future__ import annotations

import logging
import select
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
import psycopg
from flask import Flask, current_app
from sqlalchemy import Engine, Select, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool

from idp import metrics
from idp.config import DB_CONNECT_TIMEOUT
from idp.extensions import db

log = logging.getLogger(__name__)

READ_ENGINE = "idp.read_engine"
_CURSOR = "idp.read_cursor"
# PostgreSQL errors that say "not now" rather than "not this statement": connection exceptions
# (class 08), too many connections, and a server shutting down, crashed or starting up.
_UNAVAILABLE_SQLSTATES = ("08", "53300", "57P01", "57P02", "57P03")
# SQLite primary result codes for the same: BUSY, LOCKED, IOERR, CANTOPEN.
_UNAVAILABLE_SQLITE_CODES = frozenset({5, 6, 10, 14})


def init_app(app: Flask, migrations_dir: str) -> None:
    """Bind SQLAlchemy (and Flask-Migrate under the `flask` command); give SQLite WAL, foreign
    keys and write locks."""
    db.init_app(app)
    # Runs before Flask-SQLAlchemy's own teardown (Flask runs them last registered first).
    app.teardown_appcontext(_remove_session)
    app.config["IDP_MIGRATIONS_DIR"] = migrations_dir
    if click.get_current_context(silent=True) is not None:
        # Created by a `flask` command, which may be `flask db ...`. A server process never
        # migrates: Alembic would cost each worker 12 MiB for nothing.
        bind_migrations(app)
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine)
        else:
            _configure_postgresql(engine)
            app.extensions[READ_ENGINE] = engine


def bind_migrations(app: Flask) -> None:
    """Give `app` Flask-Migrate (`flask db`, `flask_migrate.upgrade()`), importing it now."""
    from flask_migrate import Migrate

    if "migrate" not in app.extensions:
        directory = app.config["IDP_MIGRATIONS_DIR"]
        Migrate(app, db, directory=directory, render_as_batch=True)


def one_off_engine(database_url: str) -> Engine:
    """An engine for reads outside the app's pool (the start-up schema check, metrics scrapes):
    a connection per use (nothing held open, nothing for a fork to copy), a read that gives up
    within seconds on a locked table or a lost host, and on SQLite no write lock (the app's
    engine takes one at every BEGIN)."""
    if database_url.startswith("postgresql"):
        options: dict[str, object] = {
            "connect_timeout": DB_CONNECT_TIMEOUT,
            "options": "-c statement_timeout=2000 -c lock_timeout=1000",
            "tcp_user_timeout": 5000,
        }
    else:
        options = {"timeout": 1}
    return create_engine(
        database_url, poolclass=NullPool, hide_parameters=True, connect_args=options
    )


def read_one(statement: Select[Any], params: dict[str, Any]) -> Any:
    """Run one read-only SELECT on a hot path and return its first row (attribute access by
    column label), or None.

    On PostgreSQL it runs on a pooled connection of its own, outside any transaction, through
    the driver directly: one round trip instead of BEGIN, SELECT and ROLLBACK, and none of
    SQLAlchemy's per-execution work (which costs more than the query). The statement is still
    compiled by SQLAlchemy, once, and its columns' result types still apply (UTC datetimes).
    On SQLite, whose transactions are local and cheap, it runs in the request's session.
    """
    engine = current_app.extensions.get(READ_ENGINE)
    if engine is None:
        return db.session.connection().execute(statement, params).first()
    compiled = _compiled(statement, engine)
    try:
        pooled = engine.raw_connection()
    except psycopg.Error as exc:  # the pool hands the driver's error on unwrapped
        error = sa_exc.DBAPIError.instance(None, None, exc, psycopg.Error)
        metrics.count_database_error(error)
        raise error from exc
    try:
        connection = pooled.driver_connection
        connection.autocommit = True
        try:
            # One cursor per driver connection, kept in the pool's record of it: a new cursor
            # per query costs a third of the query's own CPU. A replaced connection gets its own.
            cursor = pooled.info.get(_CURSOR)
            if cursor is None or cursor.closed or cursor.connection is not connection:
                cursor = pooled.info[_CURSOR] = connection.cursor()
            cursor.execute(compiled.sql, params)
            row = cursor.fetchone()
        finally:
            if not connection.closed:
                connection.autocommit = False
    except psycopg.Error as exc:
        # As SQLAlchemy would wrap it, so that an outage is still told from a bug.
        is_disconnect = engine.dialect.is_disconnect(exc, connection, None)
        if is_disconnect:
            pooled.invalidate(exc)
        error = sa_exc.DBAPIError.instance(
            compiled.sql, None, exc, psycopg.Error, connection_invalidated=is_disconnect
        )
        metrics.count_database_error(error)
        raise error from exc
    finally:
        pooled.close()
    if row is None:
        return None
    return compiled.row(
        *(convert(value) for convert, value in zip(compiled.converters, row, strict=True))
    )


@dataclass(frozen=True)
class _Compiled:
    sql: str
    converters: tuple[Callable[[Any], Any], ...]
    row: type


# Keyed by the statement object itself: hot-path statements are module constants.
_COMPILED: dict[tuple[Select[Any], str], _Compiled] = {}


def _compiled(statement: Select[Any], engine: Engine) -> _Compiled:
    key = (statement, engine.dialect.name)
    found = _COMPILED.get(key)
    if found is None:
        dialect = engine.dialect
        columns = list(statement.selected_columns)
        # The public form of what SQLAlchemy runs on each value of a result (a TypeDecorator's
        # process_result_value included), looked up once per statement.
        converters = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) or _same
            for column in columns
        )
        row = namedtuple("Row", [column.key for column in columns])
        found = _COMPILED[key] = _Compiled(str(statement.compile(dialect=dialect)), converters, row)
    return found


def _same(value: Any) -> Any:
    return value


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
    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # The pre-ping without the round trip. A server that restarted or shut down has
        # closed its end, which makes an idle connection's socket readable: read what is
        # there and see whether the connection survived it. A dead one is refused here and
        # the pool opens a fresh one, so no request meets it. (A host that vanished without
        # closing anything is met by the query, answered 503, and the pool is renewed.)
        if _connection_is_dead(dbapi_connection):
            raise sa_exc.DisconnectionError()

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


def _connection_is_dead(connection: psycopg.Connection) -> bool:
    if connection.closed or connection.broken:
        return True
    pgconn = connection.pgconn
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
        if readable:
            pgconn.consume_input()
    except (OSError, ValueError, psycopg.Error):
        return True
    return pgconn.status != psycopg.pq.ConnStatus.OK


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
