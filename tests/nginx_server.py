"""nginx in front of a gunicorn, with the repository's own nginx/idp.conf.template, for the e2e
tests and the benchmark.

The same server block docker-compose.yml runs; only the addresses differ. nginx runs in the
foreground from a folder of its own (its pid, logs and temporary files), as whoever runs the
tests; no pytest here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "nginx" / "idp.conf.template"
STARTUP_TIMEOUT = 10.0

MAIN_CONFIG = """\
{user}worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/idp.conf;
}}
"""


def nginx_binary() -> str | None:
    """Debian's nginx; /usr/sbin is not on every user's PATH."""
    found = shutil.which("nginx")
    if found is None and Path("/usr/sbin/nginx").exists():
        found = "/usr/sbin/nginx"
    return found


def nginx_available() -> bool:
    return nginx_binary() is not None


def render(upstream: str, listen: str, access_log: str) -> str:
    """The repository's server block with its addresses and its access log filled in, as the
    nginx image fills them from the environment."""
    text = TEMPLATE.read_text()
    filled = {"IDP_UPSTREAM": upstream, "NGINX_LISTEN": listen, "NGINX_ACCESS_LOG": access_log}
    for name, value in filled.items():
        text = text.replace("${" + name + "}", value)
    return text


class Nginx:
    """nginx on 127.0.0.1:`port`, proxying to gunicorn on 127.0.0.1:`upstream_port`."""

    def __init__(self, port: int, upstream_port: int, folder: Path) -> None:
        self.port = port
        self.upstream_port = upstream_port
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def access_log(self) -> Path:
        return self.folder / "access.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "idp.conf").write_text(
            render(
                f"127.0.0.1:{self.upstream_port}", f"127.0.0.1:{self.port}", str(self.access_log)
            )
        )
        config = self.folder / "nginx.conf"
        # Run as root, nginx would hand its workers to `nobody`, who cannot write the buffered
        # bodies into this folder: they run as us instead.
        user = "user root;\n" if os.geteuid() == 0 else ""
        config.write_text(MAIN_CONFIG.format(folder=self.folder, user=user))
        command = [nginx_binary() or "nginx", "-c", str(config), "-p", str(self.folder)]
        with (self.folder / "stderr.log").open("wb") as stderr:
            self.process = subprocess.Popen(
                [*command, "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    "nginx exited: " + (self.folder / "stderr.log").read_text(errors="replace")
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on {self.port} within {STARTUP_TIMEOUT} s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
