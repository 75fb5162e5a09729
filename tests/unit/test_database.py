"""Which database errors mean "unavailable right now" (503), and the engine's time bounds."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest
from flask import Flask
from psycopg import errors as pg_errors
from sqlalchemy import Boolean, Integer, String, create_engine, func, literal_column, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from idp import config, create_app, database
from idp.database import is_unavailable
from idp.errors import ServiceUnavailable
from idp.extensions import db
from idp.models.types import UTCDateTime

ROOT = Path(__file__).resolve().parents[2]


def wrapped(error_class: type[sa_exc.DBAPIError], orig: Exception, invalidated: bool = False):
    return error_class("SELECT 1", None, orig, connection_invalidated=invalidated)


def sqlite_error(tmp_path: Path, locked: bool) -> sqlite3.Error:
    """A real SQLite error: 'database is locked' or 'no such table'."""
    path = tmp_path / "db.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    waiter = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        if locked:
            holder.execute("BEGIN IMMEDIATE")
            waiter.execute("BEGIN IMMEDIATE")
        else:
            waiter.execute("SELECT * FROM no_such_table")
    except sqlite3.Error as exc:
        return exc
    finally:
        waiter.close()
        holder.close()
    raise AssertionError("no error")


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        # The client library could not reach the server, or lost it.
        (wrapped(sa_exc.OperationalError, psycopg.OperationalError("Connection refused")), True),
        (wrapped(sa_exc.InterfaceError, psycopg.InterfaceError("the connection is closed")), True),
        (wrapped(sa_exc.OperationalError, pg_errors.ConnectionTimeout("timeout expired")), True),
        # The server is shutting down, crashed, starting up, or full.
        (wrapped(sa_exc.OperationalError, pg_errors.AdminShutdown("terminating")), True),
        (wrapped(sa_exc.OperationalError, pg_errors.CrashShutdown("crash")), True),
        (wrapped(sa_exc.OperationalError, pg_errors.CannotConnectNow("starting up")), True),
        (wrapped(sa_exc.OperationalError, pg_errors.TooManyConnections("too many")), True),
        # SQLAlchemy's pool had no connection to spare within pool_timeout.
        (sa_exc.TimeoutError("QueuePool limit reached"), True),
        # Whatever the driver said, SQLAlchemy recognised a lost connection.
        (wrapped(sa_exc.OperationalError, Exception("gone"), invalidated=True), True),
        # Faults of ours stay 500s: constraints, statements, timeouts of a query.
        (wrapped(sa_exc.IntegrityError, pg_errors.UniqueViolation("duplicate key")), False),
        (wrapped(sa_exc.ProgrammingError, pg_errors.UndefinedTable("no table")), False),
        (wrapped(sa_exc.OperationalError, pg_errors.QueryCanceled("statement timeout")), False),
        (sa_exc.PendingRollbackError("rollback first"), False),
        (ValueError("unrelated"), False),
    ],
    ids=lambda value: (
        type(getattr(value, "orig", None) or value).__name__
        if isinstance(value, Exception)
        else str(value)
    ),
)
def test_only_connectivity_errors_count_as_unavailable(error, unavailable):
    assert is_unavailable(error) is unavailable


def test_sqlite_locked_is_unavailable_but_a_missing_table_is_not(tmp_path):
    locked = wrapped(sa_exc.OperationalError, sqlite_error(tmp_path, locked=True))
    missing_table = wrapped(sa_exc.OperationalError, sqlite_error(tmp_path, locked=False))
    assert is_unavailable(locked)
    assert not is_unavailable(missing_table)


def test_an_unavailable_cause_counts_through_the_chain():
    lost = wrapped(sa_exc.OperationalError, psycopg.OperationalError("server closed"))
    try:
        try:
            raise lost
        except sa_exc.OperationalError as exc:
            raise RuntimeError("while doing something") from exc
    except RuntimeError as outer:
        assert is_unavailable(outer)


def test_service_unavailable_carries_retry_after_and_both_codes():
    error = ServiceUnavailable()
    assert (error.status, error.code, error.oauth_code) == (
        503,
        "service_unavailable",
        "temporarily_unavailable",
    )
    assert error.headers == {"Retry-After": "5"}
    assert ServiceUnavailable(0).headers == {"Retry-After": "1"}


def test_postgresql_connections_are_time_bounded(tmp_path):
    settings = config.load_settings(
        str(tmp_path), environ={}, overrides={"IDP_DATABASE_URL": "postgresql+psycopg://db/idp"}
    )
    options = config.flask_config(settings)["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["pool_pre_ping"] is False  # the socket check below replaces it
    assert options["hide_parameters"] is True
    assert options["connect_args"] == {"connect_timeout": config.DB_CONNECT_TIMEOUT}
    assert options["pool_timeout"] == config.DB_POOL_TIMEOUT
    assert config.DB_CONNECT_TIMEOUT + config.DB_POOL_TIMEOUT < 10


def test_sqlite_keeps_its_lock_wait(tmp_path):
    settings = config.load_settings(str(tmp_path), environ={})
    options = config.flask_config(settings)["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options == {"connect_args": {"timeout": 30}, "hide_parameters": True}


def _postgres_url() -> str:
    return os.environ.get("IDP_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1/test")


def test_a_pooled_connection_whose_server_ended_it_is_told_dead_without_a_round_trip():
    """What replaces the pre-ping: a look at the socket (README "Databases")."""
    dsn = (
        make_url(_postgres_url()).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    with psycopg.connect(dsn, autocommit=True) as admin, psycopg.connect(dsn) as pooled:
        assert database._connection_is_dead(pooled) is False
        pid = pooled.info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 5
        while not database._connection_is_dead(pooled):
            assert time.monotonic() < deadline, "a terminated connection still looks alive"
            time.sleep(0.05)
    assert database._connection_is_dead(pooled) is True  # closed


def test_the_hot_path_read_reuses_its_cursor_but_never_on_a_replaced_connection():
    engine = create_engine(_postgres_url(), pool_size=1, max_overflow=0)
    database._configure_postgresql(engine)
    app = Flask(__name__)
    app.extensions[database.READ_ENGINE] = engine
    statement = select(literal_column("7").label("seven"), func.pg_backend_pid().label("pid"))
    dsn = make_url(_postgres_url()).set(drivername="postgresql")
    try:
        with app.app_context():
            first = database.read_one(statement, {})
            cursor = _kept_cursor(engine)
            assert database.read_one(statement, {}).pid == first.pid
            assert _kept_cursor(engine) is cursor  # one cursor per connection, reused
            with psycopg.connect(dsn.render_as_string(hide_password=False)) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (first.pid,))
            deadline = time.monotonic() + 5
            row = None
            while row is None or row.pid == first.pid:
                assert time.monotonic() < deadline, "no fresh connection after the old one ended"
                # Meeting the ended connection is that request's 503; the pool then drops it.
                with contextlib.suppress(sa_exc.OperationalError):
                    row = database.read_one(statement, {})
            assert row.seven == 7
            assert _kept_cursor(engine) is not cursor
    finally:
        engine.dispose()


def _kept_cursor(engine: Any) -> Any:
    pooled = engine.raw_connection()
    try:
        return pooled.info[database._CURSOR]
    finally:
        pooled.close()


def test_a_server_process_never_imports_alembic(tmp_path):
    """Workers are created outside any `flask` command: no Flask-Migrate, no Alembic (12 MiB)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_", "FLASK_"))}
    env.update(
        IDP_DATABASE_URL=f"sqlite:///{tmp_path / 'idp.sqlite3'}", IDP_KEYS_DIR=str(tmp_path / "k")
    )
    check = (
        "import sys, wsgi; "
        "print(sorted(m for m in ('alembic', 'flask_migrate') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_flask_command_binds_migrations_and_a_server_does_not(base_settings):
    with click.Context(click.Command("db")):
        command_app = create_app(base_settings)
    server_app = create_app(base_settings)
    try:
        assert "migrate" in command_app.extensions
        assert "migrate" not in server_app.extensions
    finally:
        for app in (command_app, server_app):
            with app.app_context():
                db.engine.dispose()


def test_the_hot_path_read_converts_values_exactly_as_sqlalchemy_does():
    """read_one applies each column type's result processing itself (looked up once through the
    public TypeEngine API): if SQLAlchemy changed how results are processed, this would show."""
    engine = create_engine(_postgres_url(), pool_size=1, max_overflow=0)
    database._configure_postgresql(engine)
    app = Flask(__name__)
    app.extensions[database.READ_ENGINE] = engine
    statement = select(
        literal_column("TIMESTAMP '2026-01-02 03:04:05.123456'", UTCDateTime()).label("at"),
        literal_column("NULL::timestamp", UTCDateTime()).label("never"),
        literal_column("true", Boolean()).label("flag"),
        literal_column("'text'", String()).label("word"),
        literal_column("42", Integer()).label("number"),
    )
    try:
        with app.app_context():
            fast = database.read_one(statement, {})
        with engine.connect() as connection:
            usual = connection.execute(statement).first()
    finally:
        engine.dispose()
    assert tuple(fast) == tuple(usual)
    assert fast.at == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert fast.never is None and fast.flag is True
