"""End to end: PostgreSQL crashes under load and comes back; gunicorn is never restarted.

The database is a private cluster (tests/e2e/private_postgres.py) that the test stops with
`pg_ctl -m immediate` (a crash: every connection cut, no checkpoint) and starts again on the
same port. While it is down every answer must be a quick 503 in the documented shape, never
a 500 or a cut connection; once it is back the same workers must serve again on their own.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from flask_migrate import upgrade

from idp import create_app
from idp.database import bind_migrations
from idp.extensions import db
from tests.e2e.api import Api as HttpApi
from tests.e2e.api import unique_email
from tests.e2e.conftest import Gunicorn, server_env
from tests.e2e.private_postgres import PrivateCluster
from tests.flows import PASSWORD
from tests.support import SMTPServer, free_port

pytestmark = pytest.mark.e2e

# A request during the outage must not hang: DB_CONNECT_TIMEOUT is 3 s, and a refused
# connection (the port is closed) fails at once.
OUTAGE_ANSWER_BOUND = 5.0
RECOVERY_BOUND = 10.0
OUTAGE_SECONDS = 3.0
LOAD_THREADS = 4
# Longer than any bound above: a request that hangs shows as slow, not as a client timeout.
CLIENT_TIMEOUT = 20.0


@dataclass
class Outcome:
    kind: str
    started: float
    finished: float
    status: int | None = None
    body: Any = None
    headers: dict[str, str] | None = None
    email: str | None = None
    failure: str | None = None  # a connection reset, a timeout: never acceptable

    @property
    def elapsed(self) -> float:
        return self.finished - self.started


class Api(HttpApi):
    timeout = CLIENT_TIMEOUT


class Load:
    """Threads that keep verifying, logging in and registering until stopped."""

    def __init__(self, api: Api, email: str, token: str) -> None:
        self.api = api
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._calls: list[tuple[str, Callable[[], tuple[requests.Response, str | None]]]] = [
            ("verify_token", lambda: (api.verify_token(token), None)),
            ("login", lambda: (api.login(email), None)),
            ("register", self._register),
        ]
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(LOAD_THREADS)
        ]

    def _register(self) -> tuple[requests.Response, str | None]:
        email = unique_email("load")
        return self.api.register(email), email

    def _run(self, offset: int) -> None:
        for index in itertools.count(offset):
            if self._stop.is_set():
                return
            kind, call = self._calls[index % len(self._calls)]
            started = time.monotonic()
            try:
                response, email = call()
            except requests.RequestException as exc:
                outcome = Outcome(kind, started, time.monotonic(), failure=repr(exc))
            else:
                try:
                    body = response.json()
                except ValueError:
                    body = response.text
                outcome = Outcome(
                    kind,
                    started,
                    time.monotonic(),
                    response.status_code,
                    body,
                    dict(response.headers),
                    email,
                )
            with self._lock:
                self.outcomes.append(outcome)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT + 5)
        assert not any(thread.is_alive() for thread in self._threads)

    def between(self, start: float, end: float) -> list[Outcome]:
        """Requests sent and answered entirely within [start, end]."""
        with self._lock:
            return [o for o in self.outcomes if o.started >= start and o.finished <= end]

    def all(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)


SUCCESS = {"verify_token": 200, "login": 200, "register": 201}


def assert_unavailable(outcome: Outcome) -> None:
    """The outage answer: 503, the envelope with its stable code, Retry-After."""
    assert outcome.failure is None, outcome
    assert outcome.status == 503, outcome
    assert outcome.body == {
        "success": False,
        "message": "The service is temporarily unavailable. Try again shortly.",
        "code": "service_unavailable",
    }, outcome
    assert outcome.headers is not None
    assert outcome.headers["Retry-After"] == "5", outcome
    assert outcome.headers["Cache-Control"] == "no-store", outcome
    assert outcome.elapsed < OUTAGE_ANSWER_BOUND, outcome


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def server(cluster: PrivateCluster, smtp: SMTPServer, tmp_path: Path) -> Iterator[Gunicorn]:
    """gunicorn (2 workers) over the private cluster, its schema migrated first."""
    keys_dir = tmp_path / "keys"
    settings = {
        "IDP_DATABASE_URL": cluster.url,
        "IDP_KEYS_DIR": str(keys_dir),
        "IDP_SECRET_KEY": "e2e-secret-key-not-for-production",
    }
    migrator = create_app(settings)
    bind_migrations(migrator)
    with migrator.app_context():
        upgrade()
        db.engine.dispose()
    port = free_port()
    server = Gunicorn(server_env(settings, keys_dir, port, smtp.port), port, tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# Each record of the error log starts with a timestamp (idp and gunicorn lines) or is an audit
# line; anything else (a traceback's lines) continues the record above it.
RECORD_START = re.compile(r"^(\d{4}-\d\d-\d\d |\[\d{4}-\d\d-\d\d |\{\"ts\")")


def log_records(text: str) -> list[str]:
    records: list[str] = []
    for line in text.splitlines():
        if RECORD_START.match(line) or not records:
            records.append(line)
        else:
            records[-1] += "\n" + line
    return records


def emails_in_database(cluster: PrivateCluster, emails: list[str]) -> set[str]:
    with psycopg.connect(
        host="127.0.0.1", port=cluster.port, user="postgres", dbname="postgres"
    ) as conn:
        rows = conn.execute("SELECT email FROM users WHERE email = ANY(%s)", (emails,)).fetchall()
    return {row[0] for row in rows}


def test_a_database_crash_under_load_is_a_quick_503_and_recovers_without_a_restart(
    cluster, server, smtp
):
    api = Api(server)
    email = unique_email("outage")
    registered = api.register(email)
    assert registered.status_code == 201, registered.text
    verified = api.verify_email(smtp.mailbox.wait_for(email, timeout=10)[-1].token)
    assert verified.status_code == 200, verified.text
    logged_in = api.login(email)
    assert logged_in.status_code == 200, logged_in.text
    token = logged_in.json()["data"]["token"]
    user_before = api.verify_token(token).json()["data"]["user"]
    master_pid = server.process.pid
    workers_before = server.worker_pids()
    assert len(workers_before) == 2, workers_before

    with Load(api, email, token) as load:
        time.sleep(1.0)  # the load runs against a healthy database first
        crash_at = time.monotonic()
        cluster.crash()
        down_at = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        readiness = requests.get(f"{server.url}/readyz", timeout=CLIENT_TIMEOUT)
        restart_at = time.monotonic()
        cluster.start()
        up_at = time.monotonic()

        # Recovery: the same processes serve again once the pool has replaced its connections.
        recovered_at = None
        probes_unavailable = 0
        while time.monotonic() - up_at < RECOVERY_BOUND:
            probe = api.verify_token(token)
            if probe.status_code == 200:
                recovered_at = time.monotonic()
                break
            assert probe.status_code == 503, probe.text
            probes_unavailable += 1
            time.sleep(0.1)
        assert recovered_at is not None, f"no success within {RECOVERY_BOUND}s of the restart"
        time.sleep(1.0)  # the load runs against the recovered database for a while
    outcomes = load.all()

    # Nothing ever failed at the HTTP level, and nothing was a 500.
    assert [o for o in outcomes if o.failure is not None] == []
    assert [
        o for o in outcomes if o.status is not None and o.status >= 500 and o.status != 503
    ] == []

    # While the database was down every answer was a quick 503 in the envelope.
    during = load.between(down_at, restart_at)
    assert len(during) >= 10, f"only {len(during)} requests during the outage"
    assert {o.kind for o in during} == set(SUCCESS)
    for outcome in during:
        assert_unavailable(outcome)
    assert readiness.status_code == 503
    assert readiness.json()["checks"]["database"] == "failed"

    # Before and after, every answer was a success.
    before = [o for o in outcomes if o.finished < crash_at]
    after = [o for o in outcomes if o.started >= recovered_at]
    assert before and after
    for outcome in before + after:
        assert outcome.status == SUCCESS[outcome.kind], outcome

    # The same master and workers: nothing was restarted, nothing crashed.
    assert server.process.poll() is None
    assert server.process.pid == master_pid
    assert server.worker_pids() == workers_before
    responses = server.on_every_worker(
        lambda params: api.verify_token(token, params=params),
        lambda response: None,
    )
    assert {r.status_code for r in responses} == {200}
    assert responses[-1].json()["data"]["user"] == user_before
    assert api.login(email).status_code == 200

    # Data survived the crash: every registration answered 201 is there, none answered 503 is.
    created = [o.email for o in outcomes if o.kind == "register" and o.status == 201]
    refused = [o.email for o in during if o.kind == "register"]
    assert created and refused
    assert emails_in_database(cluster, [str(e) for e in created]) == set(created)
    assert emails_in_database(cluster, [str(e) for e in refused]) == set()

    # One warning line per 503, no traceback anywhere, no secret.
    log = server.error_log.read_text()
    with_traceback = [r for r in log_records(log) if "Traceback" in r]
    assert with_traceback == []  # mail jobs after the answer included: an outage is no bug
    for complaint in ("unhandled error", "rollback failed", "Exception during reset"):
        assert complaint not in log
    unavailable_answers = len([o for o in outcomes if o.status == 503]) + probes_unavailable
    warnings = [
        line
        for line in log.splitlines()
        if '"logger":"idp.http"' in line and '"msg":"database unavailable' in line
    ]
    assert len(warnings) == unavailable_answers, log
    assert PASSWORD not in log
    assert token not in log

    slowest = max(o.elapsed for o in during)
    print(
        f"\noutage: {len(during)} answers, slowest {slowest:.3f}s; "
        f"recovered {recovered_at - up_at:.3f}s after the restart "
        f"(database down {restart_at - down_at:.1f}s, start took {up_at - restart_at:.2f}s)"
    )
