"""The Redis revocation cache: a definite no while the database is down, never a yes.

The database stays the source of truth: with the cache flushed, or Redis down, every revoked
token is still refused.
"""

from __future__ import annotations

import time

import pytest
import redis
from flask import Flask

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


def without_database(make_app, app: Flask) -> Flask:
    """The same server (same Redis keys) with its database unreachable."""
    prefix = app.extensions["idp.services"].settings.ratelimit_prefix
    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/gone"
    return make_app(IDP_DATABASE_URL=url, IDP_RATELIMIT_PREFIX=prefix)


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
def test_with_the_database_down_a_token_redis_knows_as_revoked_is_a_definite_no(make_app, mailbox):
    app = make_app()
    client = app.test_client()
    gone, live = logged_in_user(client, mailbox), logged_in_user(client, mailbox)
    assert client.post(f"{API}/logout/", headers=gone.auth).status_code == 200
    assert {key.split(":")[-2] for key in cache_keys(app)} == {"jti", "sid"}

    outage = without_database(make_app, app).test_client()
    refused = verify_token(outage, gone.token)
    assert refused.status_code == 401
    assert refused.json["code"] == "invalid_token"
    # Redis never vouches for a token: one it does not know waits for the database.
    unknown = verify_token(outage, live.token)
    assert unknown.status_code == 503
    assert unknown.json["code"] == "service_unavailable"


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
def test_with_the_database_down_a_reset_still_refuses_the_older_tokens(make_app, mailbox):
    app = make_app()
    client = app.test_client()
    user = logged_in_user(client, mailbox)
    reset_password(client, mailbox, user.email)
    time.sleep(1)  # iat has a one-second grain
    fresh = client.post(
        f"{API}/login/", json={"email": user.email, "password": "Another-Horse-8"}
    ).json["data"]["token"]

    outage = without_database(make_app, app).test_client()
    assert verify_token(outage, user.token).status_code == 401
    assert verify_token(outage, fresh).status_code == 503
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
