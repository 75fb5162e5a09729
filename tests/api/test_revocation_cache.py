"""The Redis revocation cache refuses revoked tokens fast and never makes one valid again.

The database stays the source of truth: with the cache flushed, or Redis down, every revoked
token is still refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from flask import Flask
from sqlalchemy import event

from idp.extensions import db
from tests.conftest import REDIS_URL
from tests.flows import API, logged_in_user, settle, verify_token
from tests.support import free_port


def cache_pattern(app: Flask) -> str:
    return f"{app.extensions['idp.services'].access_tokens.revocations.prefix}:*"


def cache_keys(app: Flask) -> list[str]:
    keys = redis.Redis.from_url(REDIS_URL).scan_iter(cache_pattern(app))
    return sorted(key.decode() for key in keys)


def flush_cache(app: Flask) -> None:
    """What a Redis restart or FLUSHDB does to this app's entries (other tests' stay)."""
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(cache_pattern(app)):
        client.delete(key)


@contextmanager
def counted_queries(app: Flask) -> Iterator[list[str]]:
    statements: list[str] = []
    with app.app_context():
        engine = db.engine

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def reset_password(client, mailbox, email: str) -> None:
    assert client.post(f"{API}/password-reset/", json={"email": email}).status_code == 200
    settle(client)
    token = mailbox.wait_for(email)[-1].token
    confirmed = client.post(
        f"{API}/password-reset-confirm/",
        json={"token": token, "new_password": "Another-Horse-8"},
    )
    assert confirmed.status_code == 200, confirmed.json


@pytest.mark.redis
def test_a_logged_out_token_is_refused_from_the_cache_without_the_database(make_app, mailbox):
    app = make_app()
    client = app.test_client()
    user = logged_in_user(client, mailbox)
    assert client.post(f"{API}/logout/", headers=user.auth).status_code == 200

    kinds = {key.split(":")[-2] for key in cache_keys(app)}
    assert kinds == {"jti", "sid"}
    with counted_queries(app) as statements:
        assert verify_token(client, user.token).status_code == 401
    assert statements == []


@pytest.mark.redis
def test_a_flushed_cache_revives_nothing(make_app, mailbox):
    app = make_app()
    client = app.test_client()
    logged_out = logged_in_user(client, mailbox)
    assert client.post(f"{API}/logout/", headers=logged_out.auth).status_code == 200
    reset = logged_in_user(client, mailbox)
    reset_password(client, mailbox, reset.email)
    assert {key.split(":")[-2] for key in cache_keys(app)} == {"jti", "sid", "user"}

    flush_cache(app)
    assert cache_keys(app) == []

    for user in (logged_out, reset):
        assert verify_token(client, user.token).status_code == 401
        refreshed = client.post(f"{API}/token/refresh/", json={"refresh_token": user.refresh_token})
        assert refreshed.status_code == 401
    # The database answered, and a valid token still passes.
    fresh = logged_in_user(client, mailbox)
    assert verify_token(client, fresh.token).status_code == 200


@pytest.mark.redis
def test_a_password_reset_refuses_older_tokens_but_not_newer_ones_from_the_cache(make_app, mailbox):
    app = make_app()
    client = app.test_client()
    user = logged_in_user(client, mailbox)
    reset_password(client, mailbox, user.email)
    time.sleep(1)  # iat has a one-second grain
    fresh = client.post(
        f"{API}/login/", json={"email": user.email, "password": "Another-Horse-8"}
    ).json["data"]["token"]

    with counted_queries(app) as statements:
        assert verify_token(client, user.token).status_code == 401
    assert statements == []
    assert verify_token(client, fresh).status_code == 200


def test_with_redis_down_revocation_holds_and_nothing_waits(make_app, mailbox):
    app = make_app(IDP_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    client = app.test_client()
    user = logged_in_user(client, mailbox)
    assert verify_token(client, user.token).status_code == 200

    started = time.perf_counter()
    assert client.post(f"{API}/logout/", headers=user.auth).status_code == 200
    assert verify_token(client, user.token).status_code == 401
    refreshed = client.post(f"{API}/token/refresh/", json={"refresh_token": user.refresh_token})
    assert refreshed.status_code == 401
    # Connection refused is immediate; a hung Redis would cost at most its 0.25 s timeouts.
    assert time.perf_counter() - started < 2.0
