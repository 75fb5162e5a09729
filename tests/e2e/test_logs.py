"""The server's log under gunicorn as production runs it (its own access line, no harness
format): every line one JSON object, an access line per request, one request id joining the
access line, the audit line and the response, and no secret anywhere."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.api import Api, unique_email
from tests.e2e.conftest import REQUEST_TIMEOUT, flask_cli, launcher, numbered_folders
from tests.flows import PASSWORD
from tests.gunicorn_server import GunicornServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def production_logged(
    e2e_database: dict[str, Any], smtp: Any, tmp_path: Path
) -> Iterator[Callable[..., GunicornServer]]:
    """Servers as production runs them: gunicorn.conf.py's own access line, not the harness's."""

    def production(env: dict[str, str], port: int, folder: Path) -> GunicornServer:
        return GunicornServer(env, port, workers=2, error_log=folder / "log", args=("-w", "2"))

    yield from launcher(e2e_database, smtp.port, numbered_folders(tmp_path), production)


def json_lines(text: str) -> list[dict[str, Any]]:
    parsed = []
    for line in text.splitlines():
        if line.strip():
            try:
                parsed.append(json.loads(line))
            except ValueError:
                pytest.fail(f"not one JSON object: {line!r}")
    return parsed


def wait_for(server: GunicornServer, text: str) -> str:
    for _ in range(200):
        log = server.error_log.read_text()
        if text in log:
            return log
        time.sleep(0.05)  # a worker writes its lines as it goes; give it the moment
    raise AssertionError(f"{text!r} never logged")


def test_every_line_is_json_and_one_request_id_joins_access_and_audit(production_logged):
    server = production_logged()
    email = unique_email("logs")
    answer = Api(server).register(email)
    assert answer.status_code == 201
    request_id = answer.headers["X-Request-ID"]
    wrong = Api(server).login(email, "Wrong-Horse-7")
    assert wrong.status_code in (401, 403)

    log = wait_for(server, f'"request_id":"{request_id}"')
    lines = json_lines(log)
    for line in lines:
        assert {"ts", "level", "logger"} <= line.keys(), line
        assert line["ts"].endswith("Z")
    joined = [line for line in lines if line.get("request_id") == request_id]
    kinds = {line.get("event") or line["logger"] for line in joined}
    assert {"user.register", "gunicorn.access"} <= kinds, joined
    assert PASSWORD not in log and "Wrong-Horse-7" not in log


def test_the_access_line_has_its_fields_and_no_query_string(production_logged):
    server = production_logged()
    answer = requests.get(
        f"{server.url}/.well-known/jwks.json?token=secret-in-query",
        headers={"User-Agent": "log-test/1"},
        timeout=REQUEST_TIMEOUT,
    )
    log = wait_for(server, answer.headers["X-Request-ID"])
    (line,) = [
        entry
        for entry in json_lines(log)
        if entry.get("request_id") == answer.headers["X-Request-ID"]
    ]
    assert line["logger"] == "gunicorn.access"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/.well-known/jwks.json", 200)
    assert line["user_agent"] == "log-test/1" and line["client_address"] == "127.0.0.1"
    assert isinstance(line["duration_ms"], float) and line["bytes"] > 0
    assert "secret-in-query" not in log


def test_a_trusted_proxys_request_id_is_kept_and_anyone_elses_replaced(production_logged):
    behind = production_logged(IDP_TRUSTED_PROXIES="1")
    kept = requests.get(
        f"{behind.url}/healthz", headers={"X-Request-ID": "lb-7f3a9c21"}, timeout=REQUEST_TIMEOUT
    )
    assert kept.headers["X-Request-ID"] == "lb-7f3a9c21"
    exposed = production_logged()
    replaced = requests.get(
        f"{exposed.url}/healthz", headers={"X-Request-ID": "lb-7f3a9c21"}, timeout=REQUEST_TIMEOUT
    )
    assert replaced.headers["X-Request-ID"] != "lb-7f3a9c21"


def test_a_commands_audit_events_go_to_the_audit_file(production_logged, tmp_path):
    server = production_logged()
    audit_file = tmp_path / "audit.log"
    printed = flask_cli(
        {**server.env, "IDP_AUDIT_LOG": str(audit_file)},
        "clients",
        "create",
        "logs",
        "--scope",
        "r",
    )
    assert "client_id:" in printed
    (event,) = json_lines(audit_file.read_text())
    assert event["event"] == "client.created" and event["actor"] == "cli"
