"""Real gunicorn processes for end-to-end tests, and ways to see which worker answered.

Every server runs `gunicorn -w 2 wsgi:app` through tests/gunicorn_server.py (the interpreter
running the tests, the project root, a process group of its own killed whole when its fixture
ends). The access log records the worker pid of each request, so a test can check that *both*
workers gave the answer it expects.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import delete

from idp import create_app
from idp.extensions import db
from tests.flows import PASSWORD
from tests.gunicorn_server import GunicornError, GunicornServer
from tests.support import SMTPServer, free_port

ROOT = Path(__file__).resolve().parents[2]
# The interpreter running the tests sits beside its gunicorn and flask, whatever the venv is called.
VENV_BIN = Path(sys.executable).parent
FRONTEND_URL = "http://frontend.e2e.test"
WORKERS = 2
STARTUP_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0
HOLD_SETTLE = 0.2
# One line per request: <worker pid>, method, path, query string, status.
ACCESS_LOG_FORMAT = "%(p)s %(m)s %(U)s %(q)s %(s)s"
_probe_ids = itertools.count()


class Gunicorn(GunicornServer):
    """One gunicorn master with its workers, on 127.0.0.1, logging into `log_dir`."""

    def __init__(
        self,
        env: dict[str, str],
        port: int,
        log_dir: Path,
        workers: int = WORKERS,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.log_dir = log_dir
        self.extra_args = tuple(extra_args)
        super().__init__(
            env,
            port,
            workers=workers,
            error_log=log_dir / f"gunicorn-{port}-error.log",
            access_log=log_dir / f"gunicorn-{port}-access.log",
            args=(
                "-w",
                str(workers),
                *self.extra_args,
                "--access-logformat",
                ACCESS_LOG_FORMAT,
                "--graceful-timeout",
                "5",
            ),
            ready_path="/.well-known/openid-configuration",
            startup_timeout=STARTUP_TIMEOUT,
        )

    def start(self) -> None:
        """Start with empty logs: what they hold is then this run's (pids, lines, requests)."""
        assert self.process is None, "already running"
        assert self.access_log is not None
        self.error_log.write_text("")
        self.access_log.write_text("")
        try:
            super().start()
        except GunicornError as exc:
            pytest.fail(str(exc))

    def restart(self, **env: str) -> None:
        """Stop, then start again on the same port with some settings changed."""
        self.stop()
        self.env = {**self.env, **env}
        self.start()

    # -- who answered -----------------------------------------------------------------------

    def worker_pids(self) -> set[str]:
        """Pids of every worker booted so far (a crashed and replaced one adds a pid)."""
        return set(re.findall(r"Booting worker with pid: (\d+)", self.error_log.read_text()))

    def served_by(self, probe: str, timeout: float = 2.0) -> str:
        """Return the pid of the worker that answered the request tagged `probe=<probe>`."""
        pattern = re.compile(rf"^<(\d+)> \S+ \S+ \S*probe={re.escape(probe)}\b", re.MULTILINE)
        match = _poll(self.access_log, pattern.search, timeout, f"probe {probe}")
        return match.group(1)

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """Return the error log once it holds `text`.

        Work done after the answer (mail delivery) logs when it ends, which can be after the
        test has its answer: reading the log at once races with it.
        """
        return _poll(self.error_log, lambda log: log if text in log else None, timeout, repr(text))

    def _hold_a_worker(self) -> socket.socket:
        """Open a connection that sends nothing: the sync worker that accepts it waits on it."""
        hold = socket.create_connection(("127.0.0.1", self.port), timeout=REQUEST_TIMEOUT)
        # Long enough for an idle worker to accept it, far below gunicorn's 30 s worker timeout.
        time.sleep(HOLD_SETTLE)
        return hold

    def on_every_worker(
        self,
        send: Callable[[dict[str, str]], requests.Response],
        check: Callable[[requests.Response], None],
        max_rounds: int = 10,
    ) -> list[requests.Response]:
        """Send the same request until every (sync) worker has answered it.

        Concurrent requests do not make the workers take turns: a worker that answers in a
        millisecond is back at accept() before the other has woken, and may take every request.
        So all workers but one are held by idle connections and the request goes to the free one;
        then the worker that answered is held and the longest-held one freed, and so on.
        `send` gets query params to pass along (they tag the request in the access log), and every
        response, from whichever worker, must pass `check`.
        """
        answered: set[str] = set()
        responses: list[requests.Response] = []
        holds: list[socket.socket] = []
        try:
            for _ in range(max_rounds):
                while len(holds) < self.workers - 1:
                    holds.append(self._hold_a_worker())
                probe = str(next(_probe_ids))
                response = send({"probe": probe})
                check(response)
                responses.append(response)
                answered.add(self.served_by(probe))
                if len(answered) >= self.workers:
                    assert answered <= self.worker_pids(), (answered, self.worker_pids())
                    return responses
                holds.append(self._hold_a_worker())
                holds.pop(0).close()
        finally:
            for hold in holds:
                hold.close()
        raise AssertionError(f"only workers {answered} answered in {max_rounds} rounds")


def _poll(log: Path, find: Callable[[str], Any], timeout: float, what: str) -> Any:
    """Reread a log file until `find` returns something for it; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text()
        found = find(text)
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} is not in {log.name} after {timeout}s:\n{text}")
        time.sleep(0.02)


def server_env(
    settings: dict[str, Any], keys_dir: Path, port: int, smtp_port: int, **extra: str
) -> dict:
    """The process environment of a server: only our IDP_* settings, plus what Python needs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.pop("FLASK_APP", None)
    env.update(
        {
            "IDP_DATABASE_URL": settings["IDP_DATABASE_URL"],
            "IDP_KEYS_DIR": str(keys_dir),
            "IDP_ISSUER": f"http://127.0.0.1:{port}",
            "IDP_SECRET_KEY": "e2e-secret-key-not-for-production",
            "IDP_MAIL_SERVER": "127.0.0.1",
            "IDP_MAIL_PORT": str(smtp_port),
            "IDP_MAIL_TIMEOUT": "5",
            "IDP_FRONTEND_URL": FRONTEND_URL,
            "IDP_KEYS_RELOAD_INTERVAL": "2",
            "IDP_ARGON2_TIME_COST": "1",
            "IDP_ARGON2_MEMORY_COST": "1024",
            "IDP_ARGON2_PARALLELISM": "1",
            # The journeys make more requests than the real limits allow.
            "IDP_RATELIMIT_ENABLED": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def e2e_database(base_settings: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The migrated test database; emptied once this module's servers are gone."""
    yield base_settings
    app = create_app(base_settings)
    with app.app_context():
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(delete(table))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


def launcher(
    settings: dict[str, Any],
    default_smtp_port: int,
    new_folder: Callable[[], Path],
    build: Callable[[dict[str, str], int, Path], Any] = Gunicorn,
) -> Iterator[Callable[..., Any]]:
    """Yield a function that starts servers, each in a new folder; stop them all afterwards.

    `build(env, port, folder)` makes the server: the harness's Gunicorn by default."""
    servers: list[Any] = []

    def start(smtp_port: int | None = None, **extra: str) -> Any:
        port = free_port()
        folder = new_folder()
        env = server_env(settings, folder / "keys", port, smtp_port or default_smtp_port, **extra)
        server = build(env, port, folder)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def launch_module(
    e2e_database: dict[str, Any], smtp: SMTPServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Gunicorn]]:
    yield from launcher(e2e_database, smtp.port, lambda: tmp_path_factory.mktemp("e2e"))


@pytest.fixture(scope="module")
def server(launch_module: Callable[..., Gunicorn]) -> Gunicorn:
    """A server shared by the tests of a module that do not change its keys or settings."""
    return launch_module()


@pytest.fixture
def launch(
    e2e_database: dict[str, Any], smtp: SMTPServer, tmp_path: Path
) -> Iterator[Callable[..., Gunicorn]]:
    """Start servers of a test's own (fresh keys folder); they are killed when it ends."""
    yield from launcher(e2e_database, smtp.port, numbered_folders(tmp_path))


def numbered_folders(parent: Path) -> Callable[[], Path]:
    """A function that makes a new folder in `parent` at each call: server-0, server-1, ..."""
    folders = itertools.count()

    def new_folder() -> Path:
        folder = parent / f"server-{next(folders)}"
        folder.mkdir()
        return folder

    return new_folder


def flask_cli(env: dict[str, str], *args: str) -> str:
    """Run `flask --app wsgi ...` as an operator would, with a server's settings; its stdout."""
    done = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def rotate_keys(env: dict[str, str]) -> str:
    """Run `flask --app wsgi keys rotate` as an admin would, with a server's settings; new kid."""
    return flask_cli(env, "keys", "rotate").strip()


# -- races -------------------------------------------------------------------------------------


def spellings_of_one_new_address(count: int) -> list[str]:
    """`count` spellings (case only) of one address nobody has registered yet."""
    local = f"race{uuid.uuid4().hex[:8]}x{time.time_ns()}"
    forms = [
        f"{local}@example.com",
        f"{local.upper()}@example.com",
        f"{local.capitalize()}@Example.com",
        f"{local.swapcase()}@EXAMPLE.COM",
        f"{local.title()}@example.COM",
        f"{local}@EXAMPLE.com",
    ]
    assert count <= len(forms)
    return forms[:count]


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Start every call at the same moment (a barrier); return each result or its exception."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def attempt(index: int) -> None:
        barrier.wait(timeout=10)
        try:
            results[index] = calls[index]()
        except requests.RequestException as exc:  # reported by the caller's assertions
            results[index] = exc

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return results


# -- OpenID Connect journeys -------------------------------------------------------------------


@pytest.fixture(scope="session")
def new_verified_user(smtp: SMTPServer) -> Callable[..., tuple[str, str]]:
    """A function that registers a new user on a server (a new address unless given) and
    verifies the address as the user would (the mailed token, over HTTP); (email, user id)."""

    def register(server: Gunicorn, email: str | None = None) -> tuple[str, str]:
        email = email or f"oidc-{uuid.uuid4().hex[:12]}@example.com"
        body = {"email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace"}
        api = f"{server.url}/api/v1/auth"
        registered = requests.post(f"{api}/register/", json=body, timeout=REQUEST_TIMEOUT)
        assert registered.status_code == 201, registered.text
        token = smtp.mailbox.wait_for(email, timeout=10)[-1].token
        verified = requests.post(
            f"{api}/verify-email/", json={"token": token}, timeout=REQUEST_TIMEOUT
        )
        assert verified.status_code == 200, verified.text
        return email, registered.json()["data"]["user_id"]

    return register


@pytest.fixture(scope="session")
def new_oidc_client() -> Callable[..., dict[str, str]]:
    """A function that registers a client as an admin would (`flask clients create NAME ...`)
    and returns what the command printed: client_id, and client_secret for a confidential one."""

    def create(server: Gunicorn, name: str, *options: str) -> dict[str, str]:
        printed = flask_cli(server.env, "clients", "create", name, *options)
        fields = dict(line.split(": ", 1) for line in printed.splitlines() if ": " in line)
        assert "client_id" in fields, printed
        return fields

    return create
