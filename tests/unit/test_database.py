"""Which database errors mean "unavailable right now" (503), and the engine's time bounds."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pg_errors
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from idp import config, database
from idp.database import is_unavailable
from idp.errors import ServiceUnavailable


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


def test_a_pooled_connection_whose_server_ended_it_is_told_dead_without_a_round_trip():
    """What replaces the pre-ping: a look at the socket (README "Databases")."""
    url = os.environ.get("IDP_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1/test")
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as admin, psycopg.connect(dsn) as pooled:
        assert database._connection_is_dead(pooled) is False
        pid = pooled.info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 5
        while not database._connection_is_dead(pooled):
            assert time.monotonic() < deadline, "a terminated connection still looks alive"
            time.sleep(0.05)
    assert database._connection_is_dead(pooled) is True  # closed
