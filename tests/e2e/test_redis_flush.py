"""End to end: Redis loses every key (FLUSHDB) under a running server.

Redis holds rate-limit counters and a cache of recent revocations; the database holds every
revocation. A flush, which stands for a Redis restart without persistence (the shared Redis
itself is never restarted), must bring no revoked token back on any worker, must not stop
logins, and must not switch limits off: their counters start again from zero, and enforcement
goes on.

The server gets a Redis database of its own (FLUSHED_DB, beside the one IDP_TEST_REDIS_URL
names), so that the flush wipes nobody else's keys.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import redis

from tests.conftest import REDIS_URL
from tests.e2e.api import Api as HttpApi
from tests.e2e.api import status_is, unique_email
from tests.e2e.conftest import Gunicorn, server_env
from tests.flows import PASSWORD
from tests.support import Mailbox, SMTPServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

WRONG_PASSWORD = "Wrong-Password-1"
FLUSHED_DB = 13
# Low enough to reach in a few requests; the rest is out of the way.
LIMIT = 3
LIMITS = {
    "IDP_RATELIMIT_ENABLED": "true",
    "IDP_RATELIMIT_AUTH": f"{LIMIT} per minute",
    "IDP_RATELIMIT_SESSION": "1000 per minute",
    "IDP_RATELIMIT_VERIFY": "10000 per minute",
    "IDP_LOGIN_FAILURES_PER_ACCOUNT": f"{LIMIT} per 15 minutes",
    # Each request below comes from an address of its own unless it probes the address limit.
    "IDP_TRUSTED_PROXIES": "1",
}
_addresses = (f"198.51.100.{n % 250 + 1}" for n in itertools.count())


def redis_url_with_db(url: str, index: int) -> str:
    """The same Redis server, another database number (path /N; a ?db= would override it)."""
    parts = urlsplit(url)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "db"])
    return urlunsplit(parts._replace(path=f"/{index}", query=query))


def from_new_address() -> dict[str, str]:
    return {"X-Forwarded-For": next(_addresses)}


class Api(HttpApi):
    """Each request from an address of its own, so that only the per-account limit counts."""

    def post(self, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", from_new_address())
        return super().post(path, body, **kwargs)


@pytest.fixture
def own_redis() -> Iterator[redis.Redis]:
    """A client of the server's Redis database, emptied before and after the test."""
    assert REDIS_URL
    url = redis_url_with_db(REDIS_URL, FLUSHED_DB)
    with redis.Redis.from_url(url) as client:
        assert client.connection_pool.connection_kwargs["db"] == FLUSHED_DB
        client.flushdb()
        yield client
        client.flushdb()


@pytest.fixture
def server(
    e2e_database: dict[str, Any], smtp: SMTPServer, own_redis: redis.Redis, tmp_path: Path
) -> Iterator[Gunicorn]:
    assert REDIS_URL
    port = free_port()
    env = server_env(
        e2e_database,
        tmp_path / "keys",
        port,
        smtp.port,
        IDP_REDIS_URL=redis_url_with_db(REDIS_URL, FLUSHED_DB),
        IDP_RATELIMIT_PREFIX=f"idp-flush-{uuid.uuid4().hex[:12]}",
        **LIMITS,
    )
    server = Gunicorn(env, port, tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def registered_and_verified(api: Api, mailbox: Mailbox) -> str:
    email = unique_email("flush")
    body = {"email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "L"}
    registered = api.post("register", body)
    assert registered.status_code == 201, registered.text
    verified = api.post("verify-email", {"token": mailbox.wait_for(email, timeout=10)[0].token})
    assert verified.status_code == 200, verified.text
    return email


def logged_in(api: Api, email: str) -> dict[str, Any]:
    response = api.login(email)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def hit_limits(api: Api, limited_address: str, nobody: str) -> None:
    """Reach the per-address route limit and the per-account failed-login limit, exactly."""
    same_address = {"X-Forwarded-For": limited_address}
    resets = [api.post("password-reset", {"email": nobody}, headers=same_address) for _ in "1234"]
    assert [r.status_code for r in resets] == [200] * LIMIT + [429], [r.text for r in resets]
    failures = [api.login(nobody, WRONG_PASSWORD) for _ in "1234"]
    assert [r.status_code for r in failures] == [401] * LIMIT + [429], [r.text for r in failures]
    for refused in (resets[-1], failures[-1]):
        assert refused.json()["code"] == "rate_limited"


def test_a_flushed_redis_brings_no_revoked_token_back_and_limits_still_hold(
    server, smtp, own_redis
):
    api = Api(server)
    email = registered_and_verified(api, smtp.mailbox)

    # A logout: the access token denylisted, the session revoked.
    logged_out = logged_in(api, email)
    logout = api.post(
        "logout",
        {"refresh_token": logged_out["refresh_token"]},
        headers={"Authorization": f"Bearer {logged_out['token']}"},
    )
    assert logout.status_code == 200, logout.text

    # A refresh token replayed: the whole family revoked.
    family = logged_in(api, email)
    rotated = api.refresh(family["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    successor = rotated.json()["data"]
    replay = api.refresh(family["refresh_token"])
    assert replay.status_code == 401, replay.text

    revoked_access = [logged_out["token"], family["token"], successor["token"]]
    revoked_refresh = [
        logged_out["refresh_token"],
        family["refresh_token"],
        successor["refresh_token"],
    ]
    limited_address = "203.0.113.7"
    nobody = unique_email("nobody")
    hit_limits(api, limited_address, nobody)

    # The counters and the revocation cache are in the server's own Redis database; flush it.
    keys = list(own_redis.scan_iter())
    prefix = server.env["IDP_RATELIMIT_PREFIX"].encode()
    assert keys and all(prefix in key for key in keys), keys
    assert any(b":revoked:" in key for key in keys), keys
    own_redis.flushdb()
    assert own_redis.dbsize() == 0

    # Nothing revoked comes back, on either worker.
    for token in revoked_access:
        server.on_every_worker(lambda p, t=token: api.verify_token(t, params=p), status_is(401))
    for token in revoked_refresh:
        server.on_every_worker(lambda p, t=token: api.refresh(t, params=p), status_is(401))

    # Logging in, verifying and refreshing work as before.
    fresh = logged_in(api, email)
    server.on_every_worker(lambda p: api.verify_token(fresh["token"], params=p), status_is(200))
    assert api.refresh(fresh["refresh_token"]).status_code == 200

    # The limits count from zero again, and are enforced again at the same point.
    hit_limits(api, limited_address, nobody)
    assert own_redis.dbsize() > 0, "counted in a worker's memory, not in Redis"
    log = server.error_log.read_text()
    assert "rate-limit storage failed" not in log, log
    assert "Traceback" not in log, log
