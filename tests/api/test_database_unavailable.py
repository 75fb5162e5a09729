"""A database that cannot be reached: a quick 503 in each surface's shape, never a 500.

The crash-and-recover journey under load is tests/e2e/test_database_outage.py; these build an
app through the real factory whose database URL points where nothing answers.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from idp import config, create_app
from idp.extensions import db
from tests.api.test_openapi import Contract, load_document
from tests.flows import API_CLIENT_ID, PASSWORD
from tests.support import free_port

# A refused connection fails at once; this leaves room for a slow machine, not for a hang.
QUICK = 2.0


def unreachable_app(base_settings: dict[str, Any], database_url: str) -> Flask:
    """An app of its own: make_app would empty its tables through this database afterwards."""
    app = create_app({**base_settings, "IDP_DATABASE_URL": database_url})
    app.config["TESTING"] = True
    return app


@pytest.fixture
def closed_port_app(base_settings: dict[str, Any]) -> Iterator[Flask]:
    # free_port() closes its socket: nothing listens there, connections are refused at once.
    app = unreachable_app(
        base_settings, f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/idp"
    )
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


API_ENVELOPE = {
    "success": False,
    "message": "The service is temporarily unavailable. Try again shortly.",
    "code": "service_unavailable",
}
OAUTH_SHAPE = {
    "error": "temporarily_unavailable",
    "error_description": "The service is temporarily unavailable. Try again shortly.",
}
REGISTER = {"email": "ada@example.com", "password": PASSWORD, "first_name": "A", "last_name": "L"}
LOGIN = {"email": "a@example.com", "password": PASSWORD}
CLIENT_CREDENTIALS = {"grant_type": "client_credentials", "client_id": "c", "client_secret": "s"}
REFRESH_GRANT = {"grant_type": "refresh_token", "client_id": API_CLIENT_ID, "refresh_token": "r"}


@pytest.mark.parametrize(
    ("path", "request_kwargs", "body"),
    [
        pytest.param("/api/v1/auth/login/", {"json": LOGIN}, API_ENVELOPE, id="login"),
        pytest.param("/api/v1/auth/register/", {"json": REGISTER}, API_ENVELOPE, id="register"),
        pytest.param(
            "/api/v1/auth/verify-email/", {"json": {"token": "a" * 43}}, API_ENVELOPE, id="verify"
        ),
        pytest.param(
            "/api/v1/auth/token/refresh/",
            {"json": {"refresh_token": "a" * 43}},
            API_ENVELOPE,
            id="refresh",
        ),
        pytest.param(
            "/oauth/token", {"data": CLIENT_CREDENTIALS}, OAUTH_SHAPE, id="oauth-client-credentials"
        ),
        pytest.param("/oauth/token", {"data": REFRESH_GRANT}, OAUTH_SHAPE, id="oauth-refresh"),
    ],
)
def test_an_unreachable_database_is_a_quick_503(
    closed_port_app, caplog, path, request_kwargs, body
):
    client = closed_port_app.test_client()
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    response = client.post(path, **request_kwargs)
    elapsed = time.monotonic() - started

    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.json == body
    Contract(load_document()).check("post", path, response)  # documented, headers included
    assert response.headers["Retry-After"] == "5"
    assert elapsed < QUICK
    # One warning with the request id, no traceback, nothing the caller sent.
    records = [r for r in caplog.records if r.name == "idp.http"]
    assert len(records) == 1, records
    assert records[0].levelno == logging.WARNING
    assert records[0].exc_info is None
    assert response.headers["X-Request-ID"] in records[0].getMessage()
    assert PASSWORD not in caplog.text
    # Nothing happened, so nothing is audited (no "unknown_account" for a login that never ran).
    assert [r for r in caplog.records if r.name == "idp.audit"] == []


def test_the_next_request_gets_a_fresh_attempt(closed_port_app):
    client = closed_port_app.test_client()
    statuses = [client.post("/api/v1/auth/login/", json=LOGIN).status_code for _ in range(3)]
    assert statuses == [503, 503, 503]
    with closed_port_app.app_context():
        assert db.engine.pool.checkedout() == 0


def test_readiness_fails_quickly_too(closed_port_app):
    started = time.monotonic()
    response = closed_port_app.test_client().get("/readyz")
    assert time.monotonic() - started < QUICK
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "failed"


def test_a_silent_database_is_a_503_within_the_connect_timeout(base_settings, monkeypatch):
    # Listening but never answering (a hung host, a black-holed route): only the connect
    # timeout ends the wait. 2 s is the smallest timeout libpq/psycopg honour.
    monkeypatch.setattr(config, "DB_CONNECT_TIMEOUT", 2)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        app = unreachable_app(base_settings, f"postgresql+psycopg://postgres@127.0.0.1:{port}/idp")
        try:
            started = time.monotonic()
            response = app.test_client().post("/api/v1/auth/login/", json=LOGIN)
            elapsed = time.monotonic() - started
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
    assert response.status_code == 503
    assert response.json["code"] == "service_unavailable"
    assert 1.5 < elapsed < 2 + QUICK


def test_a_fault_of_ours_stays_a_500(base_settings, tmp_path, caplog):
    # An empty SQLite file: "no such table" is an OperationalError too, but not an outage.
    app = unreachable_app(base_settings, f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    try:
        response = app.test_client().post("/api/v1/auth/login/", json=LOGIN)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    assert response.status_code == 500
    assert response.json["code"] == "server_error"
    assert "Retry-After" not in response.headers
    assert "no such table" not in response.get_data(as_text=True)
    assert any(r.exc_info for r in caplog.records if r.name == "idp.http")
