"""GET /healthz and GET /readyz: probes for load balancers and orchestrators."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from idp import create_app
from idp.extensions import db
from idp.services.keys import MANIFEST
from idp.services.readiness import migrations_head
from tests.conftest import REDIS_URL, new_database

HEAD = "0006"  # the newest migration; a new one moves it

PROBES = ["/healthz", "/readyz"]


def standalone_app(base_settings: dict[str, Any], **overrides: Any) -> Flask:
    """An app with broken dependencies, outside make_app (which empties tables through it)."""
    app = create_app({**base_settings, **overrides})
    app.config["TESTING"] = True
    return app


def dispose(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_reports_every_check(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    expected = {"database": "ok", "schema": "ok", "signing_key": "ok"}
    if REDIS_URL:
        expected["redis"] = "ok"
    assert response.json == {"status": "ready", "checks": expected}
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.redis
def test_readyz_pings_redis_when_configured(make_app):
    app = make_app(IDP_REDIS_URL=REDIS_URL)
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"]["redis"] == "ok"


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Any:
    """A database of this run's backend that was never migrated."""
    yield from new_database(tmp_path)


def test_an_unmigrated_database_is_not_ready(base_settings, empty_database_url):
    app = standalone_app(base_settings, IDP_DATABASE_URL=empty_database_url)
    try:
        response = app.test_client().get("/readyz")
        assert response.status_code == 503
        assert response.json["checks"]["database"] == "ok"
        assert response.json["checks"]["schema"] == "failed"
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        dispose(app)


def test_a_schema_behind_the_migrations_is_not_ready_until_upgraded(app, client):
    from sqlalchemy import text

    with app.app_context():
        db.session.execute(text("UPDATE alembic_version SET version_num = '0004'"))
        db.session.commit()
    try:
        fresh = app.extensions["idp.services"].readiness
        fresh._schema_ok = False  # as a process that started now would be
        behind = client.get("/readyz")
        assert behind.status_code == 503
        assert behind.json["checks"]["schema"] == "failed"
    finally:
        with app.app_context():
            db.session.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": HEAD})
            db.session.commit()
    assert client.get("/readyz").status_code == 200


def test_the_head_is_read_from_the_migration_scripts():
    assert migrations_head(Path(__file__).resolve().parents[2] / "migrations" / "versions") == HEAD


def test_a_dead_database_fails_readiness_but_not_liveness(base_settings, tmp_path):
    missing = tmp_path / "no-such-folder" / "idp.sqlite3"
    app = standalone_app(base_settings, IDP_DATABASE_URL=f"sqlite:///{missing}")
    client = app.test_client()
    try:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
    finally:
        dispose(app)
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.json["checks"]["database"] == "failed"
    assert response.json["checks"]["signing_key"] == "ok"
    assert response.headers["Cache-Control"] == "no-store"
    # The cause is logged, never answered.
    assert str(missing) not in response.get_data(as_text=True)
    assert "Error" not in response.get_data(as_text=True)


def test_an_unreachable_redis_fails_readiness(base_settings):
    # Port 1 on the loopback: nothing listens, the connection is refused at once.
    app = standalone_app(base_settings, IDP_REDIS_URL="redis://127.0.0.1:1/0")
    try:
        response = app.test_client().get("/readyz")
    finally:
        dispose(app)
    assert response.status_code == 503
    assert response.json == {
        "status": "unavailable",
        "checks": {"database": "ok", "schema": "ok", "redis": "failed", "signing_key": "ok"},
    }


def test_a_missing_signing_key_fails_readiness(make_app, tmp_path):
    keys_dir = tmp_path / "keys"
    app = make_app(IDP_KEYS_DIR=str(keys_dir))  # development: the first key is created
    (keys_dir / MANIFEST).write_text(json.dumps({"keys": []}))
    app.extensions["idp.services"].keys.reload()
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["signing_key"] == "failed"
    assert response.json["checks"]["database"] == "ok"


def test_an_unreadable_signing_key_fails_readiness(make_app, tmp_path):
    keys_dir = tmp_path / "keys"
    app = make_app(IDP_KEYS_DIR=str(keys_dir))
    for pem in Path(keys_dir).glob("*.pem"):
        pem.unlink()
    app.extensions["idp.services"].keys.reload()
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["signing_key"] == "failed"


@pytest.mark.parametrize("path", PROBES)
def test_probes_are_never_rate_limited(make_app, path):
    app = make_app(IDP_RATELIMIT_ENABLED=True, IDP_RATELIMIT_AUTH="1 per minute")
    client = app.test_client()
    statuses = {client.get(path).status_code for _ in range(30)}
    assert statuses == {200}
