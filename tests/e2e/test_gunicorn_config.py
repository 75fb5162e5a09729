"""The project's gunicorn.conf.py, read by a real gunicorn master."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
WARNING = "keep separate rate-limit counters in memory"


def master_log(tmp_path, workers, **env):
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    environ.update(
        {
            "IDP_KEYS_DIR": str(tmp_path / "keys"),
            "IDP_DATABASE_URL": f"sqlite:///{tmp_path / 'idp.sqlite3'}",
            "IDP_SECRET_KEY": "gunicorn-config-test",
            **env,
        }
    )
    # gunicorn refuses a database that was never migrated: migrate it as an operator would.
    subprocess.run(
        [str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        check=True,
        timeout=60,
    )
    log = tmp_path / f"gunicorn-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "-w",
                str(workers),
                "-b",
                f"127.0.0.1:{port}",
                "--no-control-socket",
                "wsgi:app",
            ],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 20
            while "Booting worker" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)
    return log.read_text()


def test_memory_limits_with_several_workers_are_warned_about(tmp_path):
    assert WARNING in master_log(tmp_path, 2)


def test_no_warning_with_one_worker_or_with_redis(tmp_path):
    alone = master_log(tmp_path, 1)
    assert "Booting worker" in alone and WARNING not in alone
    shared = master_log(tmp_path, 2, IDP_REDIS_URL="redis://127.0.0.1:6379/0")
    assert "Booting worker" in shared and WARNING not in shared
