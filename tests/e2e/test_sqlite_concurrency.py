"""End to end on SQLite whatever IDP_TEST_DATABASE_URL says: one gunicorn with 4 workers of 4
threads each over a fresh SQLite file, and 20 clients writing at once.

SQLite has one writer at a time; the server takes the write lock at the start of every
transaction (BEGIN IMMEDIATE) and waits its turn, so a storm of writes must neither fail with
"database is locked" nor lose a committed row.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.api import API, unique_email
from tests.e2e.conftest import ROOT, VENV_BIN, Gunicorn, server_env
from tests.flows import PASSWORD
from tests.support import SMTPServer, free_port

pytestmark = [pytest.mark.e2e]

WRITERS = 20
ROUNDS = 3


@pytest.fixture
def sqlite_server(tmp_path: Path, smtp: SMTPServer) -> Iterator[tuple[Gunicorn, Path]]:
    database = tmp_path / "idp.sqlite3"
    port = free_port()
    env = server_env(
        {"IDP_DATABASE_URL": f"sqlite:///{database}"}, tmp_path / "keys", port, smtp.port
    )
    migrated = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    server = Gunicorn(env, port, tmp_path, workers=4, extra_args=("--threads", "4"))
    server.start()
    yield server, database
    server.stop()


def post(server: Gunicorn, path: str, body: dict[str, Any], **kwargs: Any) -> Any:
    return requests.post(f"{server.url}{API}/{path}/", json=body, timeout=30, **kwargs)


def test_concurrent_writers_on_sqlite_never_see_a_locked_database(sqlite_server, smtp):
    server, database = sqlite_server
    # Half the writers sign up new addresses, half run sessions of verified users.
    session_users = []
    for _ in range(WRITERS // 2):
        email = unique_email("sqlite-user")
        body = {"email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "L"}
        registered = post(server, "register", body)
        assert registered.status_code == 201, registered.text
        token = smtp.mailbox.wait_for(email, timeout=10)[-1].token
        assert post(server, "verify-email", {"token": token}).status_code == 200
        session_users.append(email)

    barrier = threading.Barrier(WRITERS)
    lock = threading.Lock()
    outcomes: list[tuple[str, int, str]] = []  # (what, status, body)
    registered_ids: list[str] = []
    errors: list[BaseException] = []

    def record(what: str, response: Any) -> Any:
        with lock:
            outcomes.append((what, response.status_code, response.text))
        return response

    def registrar() -> None:
        for _ in range(ROUNDS):
            body = {
                "email": unique_email("sqlite-new"),
                "password": PASSWORD,
                "first_name": "Ada",
                "last_name": "L",
            }
            response = record("register", post(server, "register", body))
            if response.status_code == 201:
                with lock:
                    registered_ids.append(response.json()["data"]["user_id"])

    def session_user(email: str) -> None:
        for _ in range(ROUNDS):
            login = record("login", post(server, "login", {"email": email, "password": PASSWORD}))
            if login.status_code != 200:
                continue
            pair = login.json()["data"]
            refreshed = record(
                "refresh", post(server, "token/refresh", {"refresh_token": pair["refresh_token"]})
            )
            if refreshed.status_code != 200:
                continue
            pair = refreshed.json()["data"]
            record(
                "logout",
                post(
                    server,
                    "logout",
                    {"refresh_token": pair["refresh_token"]},
                    headers={"Authorization": f"Bearer {pair['token']}"},
                ),
            )

    def run(work: Any, *args: Any) -> None:
        try:
            barrier.wait(timeout=30)
            work(*args)
        except BaseException as exc:  # pragma: no cover - reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(registrar,)) for _ in range(WRITERS // 2)]
    threads += [threading.Thread(target=run, args=(session_user, e)) for e in session_users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == [], errors

    failures = [o for o in outcomes if o[1] != {"register": 201}.get(o[0], 200)]
    assert failures == [], failures
    assert len(outcomes) == (WRITERS // 2) * ROUNDS * 4
    log = server.error_log.read_text()
    assert "database is locked" not in log, log
    assert "Traceback" not in log, log

    # Every account the server acknowledged is in the database.
    with contextlib.closing(sqlite3.connect(database)) as conn:
        stored = {row[0] for row in conn.execute("SELECT public_id FROM users")}
    assert len(registered_ids) == (WRITERS // 2) * ROUNDS
    assert set(registered_ids) <= stored
