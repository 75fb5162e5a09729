"""idp behind nginx with the repository's nginx/idp.conf.template (as docker-compose.yml runs it):
the client's address and the request id come through, a body idp refuses gets idp's own JSON,
and a slow client holds nginx, not a gunicorn worker."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from tests.e2e.conftest import REQUEST_TIMEOUT, Gunicorn
from tests.nginx_server import Nginx, nginx_available
from tests.support import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def proxied(launch: Callable[..., Gunicorn], tmp_path) -> Iterator[tuple[Gunicorn, Nginx]]:
    assert nginx_available(), "nginx is missing: apt-get install nginx (.ci/run installs it)"
    server = launch(IDP_TRUSTED_PROXIES="1")
    nginx = Nginx(free_port(), server.port, tmp_path / "nginx")
    nginx.start()
    yield server, nginx
    nginx.stop()


def audit_lines(server: Gunicorn, event: str) -> list[dict]:
    found = []
    for line in server.error_log.read_text().splitlines():
        start = line.find("{")
        if start == -1:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if record.get("event") == event:
            found.append(record)
    return found


def test_the_client_address_is_the_one_nginx_saw_whatever_the_client_claims(proxied):
    server, nginx = proxied
    answer = requests.post(
        f"{nginx.url}/api/v1/auth/login/",
        json={"email": "nobody-behind-nginx@example.com", "password": "Wrong-Horse-1"},
        headers={"X-Forwarded-For": "203.0.113.7", "X-Request-ID": "forged-request-id-1"},
        timeout=REQUEST_TIMEOUT,
    )
    assert answer.status_code == 401
    # nginx's own id ($request_id, 32 hex), not the one the client sent.
    request_id = answer.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    deadline = time.monotonic() + 5
    while not audit_lines(server, "login.failure") and time.monotonic() < deadline:
        time.sleep(0.05)
    (failure,) = audit_lines(server, "login.failure")
    assert failure["client_address"] == "127.0.0.1"  # nginx's peer, the real client here
    assert failure["request_id"] == request_id


def test_a_body_idp_refuses_gets_idps_json_not_nginxs_page(proxied):
    _server, nginx = proxied
    body = {"email": "x@example.com", "password": "p" * (80 * 1024)}  # over 64 KiB, under 1 MiB
    answer = requests.post(f"{nginx.url}/api/v1/auth/login/", json=body, timeout=REQUEST_TIMEOUT)
    assert answer.status_code == 413
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["code"] == "payload_too_large"


def test_slow_clients_wait_on_nginx_while_the_workers_serve_others(proxied):
    server, nginx = proxied
    # More half-sent requests than there are workers: straight to gunicorn, each would hold
    # a sync worker until it timed out. nginx holds them itself until they are whole.
    slow = []
    try:
        for _ in range(server.workers * 2):
            connection = socket.create_connection(("127.0.0.1", nginx.port), timeout=5)
            connection.sendall(b"POST /api/v1/auth/login/ HTTP/1.1\r\nHost: x\r\n")
            connection.sendall(b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            slow.append(connection)
        time.sleep(0.3)
        started = time.monotonic()
        answer = requests.get(f"{nginx.url}/healthz", timeout=REQUEST_TIMEOUT)
        assert answer.status_code == 200
        assert time.monotonic() - started < 1.0
    finally:
        for connection in slow:
            connection.close()


def test_nginx_logs_paths_never_query_strings(proxied):
    """Mailed links carry one-time tokens in the query string (and OAuth requests codes and ID
    token hints): the shipped config's access log keeps the path and drops the rest."""
    _, nginx = proxied
    secret = "Secret-Token-In-A-Mailed-Link-0123456789"
    answer = requests.get(
        f"{nginx.url}/verify-email", params={"token": secret}, timeout=REQUEST_TIMEOUT
    )
    assert answer.status_code in (200, 400)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "/verify-email" not in _read(nginx.access_log):
        time.sleep(0.05)
    logged = _read(nginx.access_log)
    assert "GET /verify-email HTTP/1.1" in logged
    assert secret not in logged and "token=" not in logged


def _read(path) -> str:
    return path.read_text() if path.exists() else ""
