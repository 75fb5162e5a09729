"""A fresh database, production settings, and idp under gunicorn in a process group of its own."""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from tests.benchmarks.params import Argon2Params
from tests.gunicorn_server import GunicornServer

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0
# Idle: the server used less than this share of one core over one interval.
IDLE_INTERVAL = 0.1
IDLE_CPU_SHARE = 0.05
# Every server started and not yet stopped, so that an exit on any path stops them too.
_running: set[Gunicorn] = set()


def free_port() -> int:
    """Return a loopback port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Database:
    """A database of the benchmark's own; `drop()` removes it."""

    url: str
    drop: Callable[[], None]


def create_database(kind: str, postgres_url: str, workdir: Path) -> Database:
    """Create an empty PostgreSQL database beside `postgres_url`'s, or name a SQLite file."""
    if kind == "sqlite":
        return Database(f"sqlite:///{workdir / 'idp.sqlite3'}", lambda: None)
    base = make_url(postgres_url)
    name = f"idp_bench_{secrets.token_hex(6)}"
    with psycopg.connect(**_libpq(base), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(**_libpq(base), autocommit=True) as conn:
            statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(statement.format(sql.Identifier(name)))

    url = base.set(database=name).render_as_string(hide_password=False)
    return Database(url, drop)


def _libpq(url: URL) -> dict[str, str | int]:
    params: dict[str, str | int] = {"dbname": url.database or "postgres"}
    params["host"] = url.host or "127.0.0.1"
    if url.port:
        params["port"] = url.port
    if url.username:
        params["user"] = url.username
    if url.password:
        params["password"] = url.password
    return params


def production_env(
    *,
    port: int,
    database_url: str,
    keys_dir: Path,
    redis_url: str | None,
    argon2: Argon2Params,
    workers: int,
    gunicorn_args: str = "",
) -> dict[str, str]:
    """The environment of a server with IDP_ENV=production settings that pass its refusals."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_", "FLASK_"))}
    env.pop("GUNICORN_CMD_ARGS", None)
    if gunicorn_args:
        # To compare against gunicorn.conf.py's choices, e.g. "--worker-class gthread --threads 2".
        env["GUNICORN_CMD_ARGS"] = gunicorn_args
    env.update(
        {
            "IDP_ENV": "production",
            "IDP_SECRET_KEY": secrets.token_urlsafe(48),
            "IDP_ISSUER": f"http://127.0.0.1:{port}",
            "IDP_DATABASE_URL": database_url,
            "IDP_KEYS_DIR": str(keys_dir),
            # Production refuses to start without SMTP; no benchmarked endpoint sends mail, so a
            # port nothing listens on will do.
            "IDP_MAIL_SERVER": "127.0.0.1",
            "IDP_MAIL_PORT": str(free_port()),
            # As production runs: every request counted and timed for Prometheus (idp.metrics).
            "IDP_METRICS_TOKEN": secrets.token_urlsafe(32),
            # The load comes from one address: per-address limits would answer 429 at once.
            "IDP_RATELIMIT_ENABLED": "false",
            # gunicorn's own default worker count, as docker-compose.yml sets it.
            "WEB_CONCURRENCY": str(workers),
            "PYTHONUNBUFFERED": "1",
            **argon2.env(),
        }
    )
    if redis_url:
        env["IDP_REDIS_URL"] = redis_url
    return env


@dataclass(frozen=True)
class ProcessMemory:
    """One process's memory in bytes: resident, private (unique), and proportional (its
    private pages plus each shared page divided by the processes sharing it)."""

    role: str  # master or worker
    pid: int
    rss: int
    uss: int
    pss: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "pid": self.pid,
            **{
                f"{name}_mib": round(getattr(self, name) / 2**20, 1)
                for name in ("rss", "uss", "pss")
            },
        }


def flask_cli(env: dict[str, str], *commands: tuple[str, ...]) -> None:
    """Run `flask --app wsgi ...` commands side by side from the project root; raise if one fails.

    Each one spends seconds importing and building the app: in parallel, that happens once.
    """
    running = [
        (
            args,
            subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "wsgi", *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for args in commands
    ]
    failures = []
    for args, process in running:
        _, stderr = process.communicate(timeout=120)
        if process.returncode != 0:
            failures.append(f"`flask {' '.join(args)}` failed:\n{stderr}")
    if failures:
        raise RuntimeError("\n".join(failures))


class Gunicorn(GunicornServer):
    """`gunicorn -c gunicorn.conf.py wsgi:app` on 127.0.0.1, in a process group of its own.

    The worker count comes from the environment (WEB_CONCURRENCY, see production_env).
    """

    def __init__(self, env: dict[str, str], port: int, workers: int, log_path: Path) -> None:
        super().__init__(
            env,
            port,
            workers=workers,
            error_log=log_path,
            args=("-c", "gunicorn.conf.py"),
            startup_timeout=STARTUP_TIMEOUT,
        )
        self.log_path = log_path
        # Where the load is sent: gunicorn itself, or a proxy in front of it (--proxy).
        self.front_url = self.url

    def start(self) -> None:
        """Start the server; return once every worker is ready, /healthz answers and all idle."""
        _running.add(self)
        try:
            super().start()
            self.wait_until_idle()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the master and every worker (the whole process group); safe to repeat."""
        _running.discard(self)
        super().stop()

    def master(self) -> psutil.Process:
        assert self.process is not None, "not running"
        return psutil.Process(self.process.pid)

    def worker_processes(self) -> list[psutil.Process]:
        return self.master().children(recursive=True)

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the master and every live worker so far."""
        total = 0.0
        for process in [self.master(), *self.worker_processes()]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def memory(self) -> list[ProcessMemory]:
        """RSS, USS and PSS of the master and of each worker."""
        found = []
        for role, process in [
            ("master", self.master()),
            *(("worker", worker) for worker in self.worker_processes()),
        ]:
            with contextlib.suppress(psutil.Error):
                info = process.memory_full_info()
                found.append(ProcessMemory(role, process.pid, info.rss, info.uss, info.pss))
        return found

    def worker_rss(self) -> dict[int, int]:
        """Resident set size in bytes of each worker, by pid."""
        sizes = {}
        for worker in self.worker_processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                sizes[worker.pid] = worker.memory_info().rss
        return sizes

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_until_idle(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until every worker exists and is idle: booted, its last request answered."""
        deadline = time.monotonic() + timeout
        previous = -1.0
        while time.monotonic() < deadline:
            time.sleep(IDLE_INTERVAL)
            if len(self.worker_processes()) < self.workers:
                continue
            used = self.cpu_seconds()
            if used - previous < IDLE_CPU_SHARE * IDLE_INTERVAL:
                return
            previous = used
        raise RuntimeError(f"gunicorn workers did not settle:\n{self.log_tail()}")


def stop_all() -> None:
    """Stop every server still running (atexit and signal handlers call this)."""
    for server in list(_running):
        server.stop()


atexit.register(stop_all)
