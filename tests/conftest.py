"""Fixtures: the real app factory over a real database, real SMTP and a real keys folder.

The database is SQLite unless IDP_TEST_DATABASE_URL names a PostgreSQL server, in which case
each run creates (and drops) a database of its own there.
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade
from sqlalchemy import delete

from idp import audit, create_app
from idp.database import bind_migrations
from idp.extensions import db
from tests.support import SMTPServer, create_postgres_database, drop_postgres_database

# Cheap Argon2 keeps the suite fast; tests that measure hashing set their own.
FAST_ARGON2 = {
    "IDP_ARGON2_TIME_COST": 1,
    "IDP_ARGON2_MEMORY_COST": 1024,
    "IDP_ARGON2_PARALLELISM": 1,
}
ISSUER = "http://idp.test"
# Set (as CI's production-shaped run does) to keep rate-limit counters in Redis; tests marked
# `redis` need it and are deselected, not skipped, without it.
REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if REDIS_URL:
        return
    selected = [item for item in items if "redis" not in item.keywords]
    deselected = [item for item in items if "redis" in item.keywords]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


@pytest.fixture(scope="session")
def smtp() -> Iterator[SMTPServer]:
    server = SMTPServer()
    server.start()
    yield server
    server.stop()


def new_database(folder: Path) -> Iterator[str]:
    """An empty database of this run's backend (SQLite in `folder`, or one of its own on the
    IDP_TEST_DATABASE_URL server), dropped afterwards."""
    base = os.environ.get("IDP_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{folder / 'idp.sqlite3'}"
        return
    url = create_postgres_database(base)
    yield url
    drop_postgres_database(url)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from new_database(tmp_path_factory.mktemp("db"))


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def base_settings(database_url: str, keys_dir: Path, smtp: SMTPServer) -> dict[str, Any]:
    settings = {
        "IDP_DATABASE_URL": database_url,
        "IDP_KEYS_DIR": str(keys_dir),
        "IDP_ISSUER": ISSUER,
        "IDP_SECRET_KEY": "test-secret-key-not-for-production",
        "IDP_MAIL_SERVER": "127.0.0.1",
        "IDP_MAIL_PORT": smtp.port,
        "IDP_MAIL_TIMEOUT": 5,
        "IDP_FRONTEND_URL": "http://frontend.test",
        # Most tests make more requests than the real limits allow; the limit tests turn them on.
        "IDP_RATELIMIT_ENABLED": False,
        **FAST_ARGON2,
    }
    if REDIS_URL:
        settings["IDP_REDIS_URL"] = REDIS_URL
    migrator = create_app(settings)
    bind_migrations(migrator)
    with migrator.app_context():
        upgrade()
        db.engine.dispose()
    return settings


@pytest.fixture
def make_app(base_settings: dict[str, Any], smtp: SMTPServer) -> Iterator[Any]:
    """Build apps through the real factory with overrides; empty every table afterwards."""
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        # Own counters per app, so that Redis-backed limits never leak between tests.
        overrides.setdefault("IDP_RATELIMIT_PREFIX", f"idp-test-{uuid.uuid4().hex[:12]}")
        app = create_app({**base_settings, **overrides})
        app.config["TESTING"] = True
        apps.append(app)
        return app

    smtp.mailbox.clear()
    yield factory
    for app in apps:
        app.extensions["idp.services"].jobs.drain()
    if apps:
        with apps[0].app_context():
            db.session.remove()
            for table in reversed(db.metadata.sorted_tables):
                db.session.execute(delete(table))
            db.session.commit()
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app: Any) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def browser(app: Flask) -> FlaskClient:
    """The user's browser: its own cookie jar, apart from the relying app's back channel."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    """`flask ...` commands (keys, clients, users, mail, maintenance) against the `app` fixture."""
    return app.test_cli_runner()


@pytest.fixture
def audit_output() -> Iterator[io.StringIO]:
    """The audit logger's lines exactly as the production JSON handler writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(audit.JSONFormatter())
    audit.logger.addHandler(handler)
    yield stream
    audit.logger.removeHandler(handler)


@pytest.fixture
def mailbox(smtp: SMTPServer) -> Any:
    return smtp.mailbox
