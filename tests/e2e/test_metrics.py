"""Prometheus metrics under real gunicorn: every worker's counts in one scrape, on the main port
(bearer token) and on the master's loopback port, surviving a worker's death."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import REQUEST_TIMEOUT, Gunicorn
from tests.flows import PASSWORD
from tests.support import free_port

pytestmark = pytest.mark.e2e

METRICS_TOKEN = "e2e-metrics-token-0123456789abcdefghijklmnop"
BEARER = {"Authorization": f"Bearer {METRICS_TOKEN}"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(exposition: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape_main(server: Gunicorn) -> Samples:
    response = requests.get(f"{server.url}/metrics", headers=BEARER, timeout=REQUEST_TIMEOUT)
    assert response.status_code == 200, response.text
    return parse(response.text)


def scrape_port(port: int) -> Samples:
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=REQUEST_TIMEOUT)
    assert response.status_code == 200, response.text
    return parse(response.text)


def sign_in(server: Gunicorn, email: str) -> None:
    response = requests.post(
        f"{server.url}/api/v1/auth/login/",
        json={"email": email, "password": PASSWORD},
        timeout=REQUEST_TIMEOUT,
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    # Left by an earlier run: gunicorn must clear it, or its counts would be added to this run's.
    (folder / "counter_1.db").write_bytes(b"stale counts of a previous run")
    return folder


@pytest.fixture
def server(launch: Callable[..., Gunicorn], metrics_port: int, metrics_dir: Path) -> Gunicorn:
    return launch(
        IDP_METRICS_TOKEN=METRICS_TOKEN,
        IDP_METRICS_BIND=f"127.0.0.1:{metrics_port}",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )


def test_a_scrape_counts_every_workers_requests(server, new_verified_user, metrics_dir):
    assert not (metrics_dir / "counter_1.db").exists()
    email, _user_id = new_verified_user(server)
    before = scrape_main(server)

    def sign_in(params: dict[str, str]) -> requests.Response:
        return requests.post(
            f"{server.url}/api/v1/auth/login/",
            params=params,
            json={"email": email, "password": PASSWORD},
            timeout=REQUEST_TIMEOUT,
        )

    def signed_in(response: requests.Response) -> None:
        assert response.status_code == 200, response.text

    logins = server.on_every_worker(sign_in, signed_in)

    def wrong(params: dict[str, str]) -> requests.Response:
        return requests.post(
            f"{server.url}/api/v1/auth/login/",
            params=params,
            json={"email": email, "password": "Wrong-Horse-9"},
            timeout=REQUEST_TIMEOUT,
        )

    def refused(response: requests.Response) -> None:
        assert response.status_code == 401, response.text

    failures = server.on_every_worker(wrong, refused)
    health = 25
    for _ in range(health):
        with requests.Session() as fresh:  # a new connection each: any worker may take it
            assert fresh.get(f"{server.url}/healthz", timeout=REQUEST_TIMEOUT).status_code == 200
    after = scrape_main(server)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("idp_logins_total", outcome="success") == len(logins)
    assert grew("idp_logins_total", outcome="bad_credentials") == len(failures)
    assert grew("idp_tokens_issued_total", grant="password") == len(logins)
    route = "/api/v1/auth/login/"
    assert grew("idp_http_requests_total", route=route, method="POST", status="200") == len(logins)
    assert grew("idp_http_requests_total", route="/healthz", method="GET", status="200") == health
    assert grew("idp_http_request_duration_seconds_count", route="/healthz", method="GET") == health

    # Each worker wrote its own counts; the scrape added them up.
    workers = server.worker_pids()
    assert len(workers) == 2
    written = {path.name for path in metrics_dir.glob("counter_*.db")}
    assert {f"counter_{pid}.db" for pid in workers} <= written

    # The master's port shows the same counts, without a token, and the state read now.
    from_port = scrape_port(int(server.env["IDP_METRICS_BIND"].rsplit(":", 1)[1]))
    assert value(from_port, "idp_logins_total", outcome="success") == value(
        after, "idp_logins_total", outcome="success"
    )
    assert value(from_port, "idp_signing_keys_published") >= 1
    assert ("idp_mail_outbox_oldest_pending_age_seconds", frozenset()) in from_port
    assert value(from_port, "idp_mail_outbox_messages", status="sent") >= 1


def test_counts_outlive_a_worker_that_dies(server, new_verified_user):
    email, _user_id = new_verified_user(server)
    for _ in range(3):
        sign_in(server, email)
    before = value(scrape_main(server), "idp_logins_total", outcome="success")
    assert before >= 3
    victim = sorted(server.worker_pids())[0]
    os.kill(int(victim), signal.SIGKILL)
    deadline = time.monotonic() + 20
    while len(server.ready_pids()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(server.ready_pids()) == 3, "no worker replaced the one killed"
    # A counter never goes back: the dead worker's counts stay in the sum.
    assert value(scrape_main(server), "idp_logins_total", outcome="success") == before


def test_only_the_master_listens_on_the_metrics_port(server, metrics_port):
    master = psutil.Process(server.process.pid)

    def listens(process: psutil.Process) -> bool:
        return any(
            conn.status == psutil.CONN_LISTEN and conn.laddr.port == metrics_port
            for conn in process.net_connections(kind="tcp")
        )

    assert listens(master)
    workers = master.children()
    assert len(workers) == 2
    assert not any(listens(worker) for worker in workers)
    # The port has no token; the main port still asks for it.
    assert requests.get(f"{server.url}/metrics", timeout=REQUEST_TIMEOUT).status_code == 401


def test_without_a_metrics_setting_nothing_is_served_or_written(launch, tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    server = launch(TMPDIR=str(temporary))
    answer = requests.get(f"{server.url}/metrics", headers=BEARER, timeout=REQUEST_TIMEOUT)
    assert answer.status_code == 404
    assert not list(temporary.glob("idp-metrics-*"))


def test_the_folder_gunicorn_made_for_the_counts_goes_with_it(launch, tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    server = launch(IDP_METRICS_TOKEN=METRICS_TOKEN, TMPDIR=str(temporary))
    made = list(temporary.glob("idp-metrics-*"))
    assert len(made) == 1 and list(made[0].glob("counter_*.db"))
    assert scrape_main(server)
    server.stop()
    assert not made[0].exists()


def test_counts_outlive_a_reload(server, new_verified_user):
    email, _user_id = new_verified_user(server)
    sign_in(server, email)
    before = value(scrape_main(server), "idp_logins_total", outcome="success")
    old_workers = set(server.ready_pids())
    os.kill(server.process.pid, signal.SIGHUP)  # gunicorn rereads its settings, new workers
    deadline = time.monotonic() + 20
    while len(set(server.ready_pids()) - old_workers) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(set(server.ready_pids()) - old_workers) == 2, "no new workers after the HUP"
    assert value(scrape_main(server), "idp_logins_total", outcome="success") == before
