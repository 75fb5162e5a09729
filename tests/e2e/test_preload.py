"""The app is loaded once in gunicorn's master and the workers are forked from it (preload_app):
they share the memory of what they only read, and nothing that must be their own.

Each worker gets its own database and Redis connections (seen from the processes' sockets and
from PostgreSQL's pg_stat_activity and Redis' CLIENT LIST), runs its own background jobs, and
the master holds no connection at all. Key rotation reaching every worker and the crash tests
are tests/e2e/test_gunicorn_flow.py and test_crash_recovery.py, run on this same configuration.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import REDIS_URL
from tests.e2e.conftest import REQUEST_TIMEOUT, Gunicorn
from tests.flows import PASSWORD

pytestmark = pytest.mark.e2e

POSTGRES_PORT = 5432
REDIS_PORT = 6379
# Targets of issue 13 (Django + SimpleJWT's two-worker server, on this machine, was 133 MiB).
SERVER_PSS_MIB = 133.0
WORKER_USS_MIB = 30.0
# After sign-ins on every worker: measured 135 to 147 MiB (it was 165 without preload_app).
SERVER_PSS_AFTER_USE_MIB = 155.0
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(launch_module) -> Gunicorn:
    # Redis when the run has it: the revocation cache then writes to it from every worker.
    extra = {"IDP_REDIS_URL": REDIS_URL} if REDIS_URL else {}
    return launch_module(**extra)


def processes(server: Gunicorn) -> tuple[psutil.Process, list[psutil.Process]]:
    master = psutil.Process(server.process.pid)
    return master, master.children()


def socket_inodes(process: psutil.Process) -> set[str]:
    inodes = set()
    folder = Path(f"/proc/{process.pid}/fd")
    for fd in folder.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:"):
            inodes.add(target)
    return inodes


def listening_inodes(process: psutil.Process) -> set[str]:
    """The sockets gunicorn listens on: the one thing master and workers share by design."""
    found = set()
    for connection in process.net_connections(kind="inet"):
        if connection.status == psutil.CONN_LISTEN and connection.fd != -1:
            found.add(os.readlink(f"/proc/{process.pid}/fd/{connection.fd}"))
    return found


def local_ports_to(process: psutil.Process, port: int) -> set[int]:
    return {
        connection.laddr.port
        for connection in process.net_connections(kind="inet")
        if connection.raddr and connection.raddr.port == port
    }


def sign_in_and_out_on_every_worker(server: Gunicorn, email: str) -> None:
    """Every worker answers a logout: a database write and, with Redis, a revocation mark."""
    api = f"{server.url}/api/v1/auth"

    def logout(params: dict[str, str]) -> requests.Response:
        signed_in = requests.post(
            f"{api}/login/", json={"email": email, "password": PASSWORD}, timeout=REQUEST_TIMEOUT
        )
        assert signed_in.status_code == 200, signed_in.text
        token = signed_in.json()["data"]["token"]
        return requests.post(
            f"{api}/logout/",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=REQUEST_TIMEOUT,
        )

    def ended(response: requests.Response) -> None:
        assert response.status_code == 200, response.text

    server.on_every_worker(logout, ended)


def test_no_two_processes_share_a_connection(server, new_verified_user):
    email, _user_id = new_verified_user(server)
    sign_in_and_out_on_every_worker(server, email)
    master, workers = processes(server)
    assert len(workers) == 2

    shared_by_design = listening_inodes(master)
    assert shared_by_design, "gunicorn's listening socket was not found"
    first, second = (socket_inodes(worker) for worker in workers)
    assert first & second == shared_by_design
    assert not (socket_inodes(master) - shared_by_design) & (first | second)

    database = make_url(server.env["IDP_DATABASE_URL"])
    if database.get_backend_name() == "postgresql":
        ports = [local_ports_to(worker, POSTGRES_PORT) for worker in workers]
        assert all(ports), "a worker that wrote to PostgreSQL holds no connection to it"
        assert not ports[0] & ports[1]
        assert not local_ports_to(master, POSTGRES_PORT)
        engine = create_engine(database)
        try:
            with engine.connect() as connection:
                backends = {
                    row.client_port
                    for row in connection.execute(
                        text(
                            "SELECT client_port FROM pg_stat_activity "
                            "WHERE datname = :name AND pid <> pg_backend_pid()"
                        ),
                        {"name": database.database},
                    )
                }
        finally:
            engine.dispose()
        # Every connection a worker holds is a backend of its own, seen by PostgreSQL.
        assert ports[0] | ports[1] <= backends
    if REDIS_URL:
        ports = [local_ports_to(worker, REDIS_PORT) for worker in workers]
        assert all(ports), "a worker that marked a revocation holds no connection to Redis"
        assert not ports[0] & ports[1]
        assert not local_ports_to(master, REDIS_PORT)
        clients = redis.Redis.from_url(REDIS_URL).client_list()
        seen = {int(client["addr"].rsplit(":", 1)[1]) for client in clients}
        assert ports[0] | ports[1] <= seen


def test_background_jobs_run_in_every_worker(server, new_verified_user, smtp):
    email, _user_id = new_verified_user(server)
    smtp.mailbox.clear()

    def forgot(params: dict[str, str]) -> requests.Response:
        return requests.post(
            f"{server.url}/api/v1/auth/password-reset/",
            params=params,
            json={"email": email},
            timeout=REQUEST_TIMEOUT,
        )

    def answered(response: requests.Response) -> None:
        assert response.status_code == 200, response.text

    # The look-up and the mail run after the answer, in the worker's job pool.
    asked = server.on_every_worker(forgot, answered)
    mails = smtp.mailbox.wait_for(email, count=len(asked), timeout=15)
    assert len(mails) == len(asked)


def memory(server: Gunicorn) -> dict[int, Any]:
    master, workers = processes(server)
    return {process.pid: process.memory_full_info() for process in [master, *workers]}


def test_the_workers_share_what_they_only_read(launch, new_verified_user):
    server = launch()
    master_pid = server.process.pid
    idle = memory(server)
    # Idle, as loaded: the app's pages counted once between master and workers (before
    # preload_app each worker held its own copy: 140 MiB in all).
    assert sum(info.pss for info in idle.values()) / MIB <= SERVER_PSS_MIB, idle

    email, _user_id = new_verified_user(server)
    sign_in_and_out_on_every_worker(server, email)  # every path of a login run on each worker
    for _ in range(50):
        assert requests.get(f"{server.url}/healthz", timeout=REQUEST_TIMEOUT).ok
    warm = memory(server)
    workers = [pid for pid in warm if pid != master_pid]
    # A worker's own memory is what one more worker would add.
    assert max(warm[pid].uss for pid in workers) / MIB <= WORKER_USS_MIB, warm
    # Pages a request writes to (reference counts) are copied into each worker: the whole
    # server grows past the idle target (see the README's "Benchmarks"); this bounds the growth.
    assert sum(info.pss for info in warm.values()) / MIB <= SERVER_PSS_AFTER_USE_MIB, warm
