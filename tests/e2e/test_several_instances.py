"""End to end: two gunicorn instances (A and B, 2 workers each) behind one database, one keys
folder and (for the limit tests) one Redis, as a horizontally scaled deployment runs them.

Both instances have the same issuer, so a token minted by one is valid at the other; each is
reached on its own loopback port.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.conftest import ISSUER, REDIS_URL
from tests.e2e.api import Api, status_is, unique_email
from tests.e2e.conftest import (
    Gunicorn,
    race,
    rotate_keys,
    server_env,
    spellings_of_one_new_address,
)
from tests.flows import PASSWORD
from tests.support import Mailbox, SMTPServer, free_port

pytestmark = [pytest.mark.e2e]

_probes = itertools.count()


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def registered_and_verified(
    api: Api, mailbox: Mailbox, email: str, headers: dict[str, str] | None = None
) -> str:
    response = api.register(email, headers=headers)
    assert response.status_code == 201, response.text
    token = mailbox.wait_for(email, timeout=10)[-1].token
    verified = api.post("verify-email", {"token": token}, headers=headers)
    assert verified.status_code == 200, verified.text
    return response.json()["data"]["user_id"]


def assert_clean_logs(*servers: Gunicorn) -> None:
    for server in servers:
        log = server.error_log.read_text()
        assert "Traceback" not in log, log


@pytest.fixture
def instances(
    e2e_database: dict[str, Any], smtp: SMTPServer, tmp_path: Path
) -> Iterator[Callable[..., tuple[Gunicorn, Gunicorn]]]:
    """Start instances A and B over the shared database and one keys folder of this test's.

    Keyword arguments are extra IDP_* settings given to both. Killed when the test ends.
    """
    servers: list[Gunicorn] = []
    keys_dir = tmp_path / "keys"

    def start(**extra: str) -> tuple[Gunicorn, Gunicorn]:
        common = {
            "IDP_ISSUER": ISSUER,
            "IDP_KEYS_RELOAD_INTERVAL": "2",
            # Counters of this test's own, shared by A and B.
            "IDP_RATELIMIT_PREFIX": f"idp-e2e-{uuid.uuid4().hex}",
        }
        if REDIS_URL:
            common["IDP_REDIS_URL"] = REDIS_URL
        common.update(extra)
        pair = []
        for name in ("a", "b"):
            port = free_port()
            folder = tmp_path / f"instance-{name}"
            folder.mkdir()
            env = server_env(e2e_database, keys_dir, port, smtp.port, **common)
            server = Gunicorn(env, port, folder)
            servers.append(server)
            server.start()
            pair.append(server)
        return pair[0], pair[1]

    smtp.mailbox.clear()
    yield start
    for server in servers:
        server.stop()


# -- tokens and sessions across instances ----------------------------------------------------


def test_tokens_logout_and_refresh_reuse_are_seen_by_the_other_instance(instances, smtp):
    a, b = instances()
    api_a, api_b = Api(a), Api(b)
    email = unique_email("cross")
    user_id = registered_and_verified(api_a, smtp.mailbox, email)

    # A token minted at A verifies at B (on both of B's workers).
    session = api_a.login(email).json()["data"]
    checked = b.on_every_worker(
        lambda p: api_b.verify_token(session["token"], params=p), status_is(200)
    )
    assert checked[0].json()["data"]["user"]["id"] == user_id

    # Logout at A: B refuses the token on the very next request, on every worker.
    logout = api_a.post(
        "logout",
        {"refresh_token": session["refresh_token"]},
        headers={"Authorization": f"Bearer {session['token']}"},
    )
    assert logout.status_code == 200, logout.text
    refused = api_b.verify_token(session["token"])
    assert refused.status_code == 401, refused.text
    b.on_every_worker(lambda p: api_b.verify_token(session["token"], params=p), status_is(401))
    assert api_b.post("token/refresh", {"refresh_token": session["refresh_token"]}).status_code == (
        401
    )

    # Rotate at A, replay the spent refresh token at B: the whole family is revoked.
    family = api_a.login(email).json()["data"]
    rotated = api_a.post("token/refresh", {"refresh_token": family["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    pair = rotated.json()["data"]
    assert api_b.verify_token(pair["token"]).status_code == 200
    replay = api_b.post("token/refresh", {"refresh_token": family["refresh_token"]})
    assert replay.status_code == 401, replay.text
    assert replay.json()["code"] == "invalid_refresh_token"
    after_replay = api_a.post("token/refresh", {"refresh_token": pair["refresh_token"]})
    assert after_replay.status_code == 401, after_replay.text
    assert api_a.verify_token(pair["token"]).status_code == 401
    assert api_b.verify_token(pair["token"]).status_code == 401
    assert api_a.verify_token(family["token"]).status_code == 401
    assert_clean_logs(a, b)


# -- racing sign-ups across instances --------------------------------------------------------


def test_registration_race_across_instances_creates_one_account(instances, smtp):
    a, b = instances()
    apis = [Api(a), Api(b)]
    spellings = spellings_of_one_new_address(6)
    results = race(
        [
            lambda index=index, address=address: apis[index % 2].register(address)
            for index, address in enumerate(spellings)
        ]
    )

    statuses = sorted((getattr(r, "status_code", repr(r)) for r in results), key=str)
    assert statuses == [201, 409, 409, 409, 409, 409], [getattr(r, "text", r) for r in results]
    for response in results:
        if response.status_code == 409:
            assert response.json()["code"] == "email_exists"
    # One account, one verification mail.
    smtp.mailbox.wait_for(spellings[0])
    time.sleep(0.5)
    assert len(smtp.mailbox.to(spellings[0])) == 1
    assert_clean_logs(a, b)


# -- key rotation across instances -----------------------------------------------------------


def test_key_rotation_by_one_command_reaches_both_instances(instances, smtp):
    a, b = instances()
    apis = {a.port: Api(a), b.port: Api(b)}
    email = unique_email("rotation")
    keys_dir = Path(a.env["IDP_KEYS_DIR"])
    assert Path(b.env["IDP_KEYS_DIR"]) == keys_dir

    # Two instances started on one empty folder: still one key, used by both.
    pems = sorted(p.name for p in keys_dir.glob("*.pem"))
    assert len(pems) == 1, pems
    registered_and_verified(apis[a.port], smtp.mailbox, email)
    before = apis[a.port].login(email).json()["data"]["token"]
    old_kid = kid_of(before)
    assert pems == [f"{old_kid}.pem"]
    assert kid_of(apis[b.port].login(email).json()["data"]["token"]) == old_kid

    new_kid = rotate_keys(a.env)
    assert new_kid and new_kid != old_kid
    deadline = time.monotonic() + 10

    # Within 10 s every worker of both instances signs with the new key, and none goes back.
    switched: dict[int, set[str]] = {a.port: set(), b.port: set()}
    servers = {a.port: a, b.port: b}
    jobs = [(port, n) for port in servers for n in range(2)]

    def login_at(job: tuple[int, int]) -> tuple[int, str, Any]:
        port, _ = job
        tag = f"rot{next(_probes)}"
        return port, tag, apis[port].login(email, params={"probe": tag})

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        while any(len(switched[port]) < 2 for port in servers):
            assert time.monotonic() < deadline, f"only {switched} switched within 10 s"
            for port, tag, response in pool.map(login_at, jobs):
                assert response.status_code == 200, response.text
                kid = kid_of(response.json()["data"]["token"])
                assert kid in (old_kid, new_kid)
                pid = servers[port].served_by(tag)
                if kid == new_kid:
                    switched[port].add(pid)
                else:
                    assert pid not in switched[port], "a worker went back to the old key"
            time.sleep(0.1)
    assert switched[a.port] == a.worker_pids()
    assert switched[b.port] == b.worker_pids()

    # The pre-rotation token still verifies everywhere; new logins carry the new kid.
    for server in (a, b):
        api = apis[server.port]
        server.on_every_worker(
            lambda p, api=api: api.verify_token(before, params=p), status_is(200)
        )
        assert kid_of(api.login(email).json()["data"]["token"]) == new_kid
    assert_clean_logs(a, b)


# -- shared rate limits (Redis) --------------------------------------------------------------


@pytest.mark.redis
def test_per_address_limit_is_shared_by_both_instances(instances):
    a, b = instances(IDP_RATELIMIT_ENABLED="true", IDP_RATELIMIT_AUTH="5 per minute")
    apis = [Api(a), Api(b)]

    # Different unknown addresses, so the per-account limit is not what answers.
    statuses = []
    last = None
    for n in range(6):
        last = apis[n % 2].login(unique_email("limit"), "Wrong-Password-1")
        statuses.append(last.status_code)
    assert statuses == [401, 401, 401, 401, 401, 429], statuses
    assert last is not None
    assert last.json()["code"] == "rate_limited"
    assert int(last.headers["Retry-After"]) >= 1
    # Either instance refuses now.
    assert apis[0].login(unique_email("limit"), "Wrong-Password-1").status_code == 429
    assert apis[1].login(unique_email("limit"), "Wrong-Password-1").status_code == 429
    assert_clean_logs(a, b)


@pytest.mark.redis
def test_per_account_failed_login_limit_is_shared_by_both_instances(instances, smtp):
    a, b = instances(
        IDP_RATELIMIT_ENABLED="true",
        IDP_LOGIN_FAILURES_PER_ACCOUNT="3 per 15 minutes",
        IDP_TRUSTED_PROXIES="1",
    )
    apis = [Api(a), Api(b)]
    addresses = (f"198.51.100.{n}" for n in itertools.count(1))

    def via_new_address() -> dict[str, str]:
        return {"X-Forwarded-For": next(addresses)}

    email = unique_email("account")
    registered_and_verified(apis[0], smtp.mailbox, email, headers=via_new_address())

    # Three failures, each from its own address, spread over A and B.
    for n in range(3):
        failed = apis[n % 2].login(email, "Wrong-Password-1", headers=via_new_address())
        assert failed.status_code == 401, failed.text
    # The wall is full at both instances: every further failure answers 429 ...
    for api in (apis[1], apis[0]):
        refused = api.login(email, "Wrong-Password-1", headers=via_new_address())
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == "rate_limited"
    # ... while the owner, from an address of their own, still signs in at either.
    for api in apis:
        right = api.login(email, PASSWORD, headers=via_new_address())
        assert right.status_code == 200, right.text
    # A source that guessed twice under attack has used its budget at both instances.
    guesser = {"X-Forwarded-For": "203.0.113.99"}
    for api in apis:
        assert api.login(email, "Wrong-Password-1", headers=guesser).status_code == 429
    for api in apis:
        refused = api.login(email, PASSWORD, headers=guesser)
        assert refused.status_code == 429, refused.text
    # Another account is not affected.
    other = apis[1].login(unique_email("other"), "Wrong-Password-1", headers=via_new_address())
    assert other.status_code == 401, other.text
    assert_clean_logs(a, b)
