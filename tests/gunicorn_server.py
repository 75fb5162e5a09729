"""`gunicorn wsgi:app` on 127.0.0.1 for the e2e tests and the benchmark: start, wait, stop.

The server runs from the project root (so gunicorn reads gunicorn.conf.py there) with the
interpreter running us, in a process group of its own, so that stopping it stops every worker too.
It is ready once every worker has logged that it loaded the app (gunicorn.conf.py's
post_worker_init) and a request answers 200: one answer alone shows only that one worker is up.
No pytest here: the benchmark uses it outside a test run.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
READY_LINE = re.compile(r"idp: worker (\d+) is ready")


class GunicornError(RuntimeError):
    """The server exited during start-up, or was not ready in time (the message has its log)."""


class GunicornServer:
    """One gunicorn master and its workers on 127.0.0.1:`port`.

    `workers` is how many ready workers to wait for: the caller sets the count itself (`-w` in
    `args`, or WEB_CONCURRENCY in `env`). gunicorn's own log (stdout and stderr) is appended to
    `error_log`; requests go to `access_log` if one is given. `args` come before the bind address.
    """

    def __init__(
        self,
        env: dict[str, str],
        port: int,
        *,
        workers: int,
        error_log: Path,
        access_log: Path | None = None,
        args: Sequence[str] = (),
        ready_path: str = "/healthz",
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.env = env
        self.port = port
        self.workers = workers
        self.error_log = error_log
        self.access_log = access_log
        self.args = tuple(args)
        self.ready_path = ready_path
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # where this start's lines begin in error_log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        access = ["--access-logfile", str(self.access_log)] if self.access_log else []
        return [
            sys.executable,
            "-m",
            "gunicorn",
            *self.args,
            "-b",
            f"127.0.0.1:{self.port}",
            *access,
            # Each server of ours is separate: no shared control socket under $HOME.
            "--no-control-socket",
            "wsgi:app",
        ]

    def start(self) -> None:
        """Start the server; return once every worker is ready and it answers `ready_path`."""
        assert self.process is None, "already running"
        self._log_start = self.error_log.stat().st_size if self.error_log.exists() else 0
        with self.error_log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the master and every worker (the whole process group); safe to repeat."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)
        # Workers that outlived their master would keep the port and the database busy.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def log_since_start(self) -> str:
        """What gunicorn and the app logged since the last start()."""
        with self.error_log.open("rb") as log:
            log.seek(self._log_start)
            return log.read().decode(errors="replace")

    def ready_pids(self) -> set[str]:
        """Pids of the workers that have loaded the app since the last start()."""
        return set(READY_LINE.findall(self.log_since_start()))

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GunicornError(f"gunicorn exited during start-up:\n{self.log_since_start()}")
            if len(self.ready_pids()) >= self.workers and self._answers():
                return
            time.sleep(0.1)
        raise GunicornError(
            f"gunicorn was not ready within {self.startup_timeout}s:\n{self.log_since_start()}"
        )

    def _answers(self) -> bool:
        try:
            response = requests.get(f"{self.url}{self.ready_path}", timeout=2)
        except requests.RequestException:
            return False
        return response.status_code == 200
