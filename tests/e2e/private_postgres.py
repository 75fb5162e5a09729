"""A PostgreSQL cluster of a test's own, which the test may crash and start again.

The machine's shared server must never be stopped; outage tests run against one of these:
initdb into a fresh folder, served on a free loopback port. PostgreSQL refuses to run as root,
so when the tests run as root the cluster belongs to the `postgres` OS user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support import free_port

PG_BIN = Path(os.environ.get("IDP_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"
START_TIMEOUT = 30


class PrivateCluster:
    """initdb, start, crash (immediate stop) and start again, always on the same port."""

    def __init__(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            # A missing binary is a failure of the test, never a skip.
            assert (PG_BIN / tool).exists(), f"{PG_BIN / tool} is missing (IDP_TEST_PG_BIN)"
        self.port = free_port()
        # Not under pytest's tmp_path: that is private to root, and the cluster runs as postgres.
        self.folder = Path(tempfile.mkdtemp(prefix="idp-pg-"))
        self.data = self.folder / "data"
        self._owner = pwd.getpwnam(PG_USER) if os.geteuid() == 0 else None
        if self._owner is not None:
            os.chown(self.folder, self._owner.pw_uid, self._owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(START_TIMEOUT),
            "start",
        )

    def crash(self) -> None:
        """Stop at once, as a crash would: no checkpoint, every connection cut."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _run(self, tool: str, *args: str) -> None:
        command = [str(PG_BIN / tool), *args]
        if self._owner is not None:
            command = ["runuser", "-u", PG_USER, "--", *command]
        completed = subprocess.run(
            command,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT + 30,
            check=False,
        )
        if completed.returncode != 0:
            raise subprocess.CalledProcessError(
                completed.returncode, command, completed.stdout, completed.stderr
            )
