"""Every failed client authentication leaves one audit line: a wrong secret, an unknown client,
a method the client may not use, no credentials at all."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from tests.api.test_oauth import new_client
from tests.oidc_flows import register_app

GRANT = {"grant_type": "client_credentials"}


def failures(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line["event"] == "client.auth_failure"]


@pytest.mark.parametrize("endpoint", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
def test_an_unknown_client_is_audited(client, audit_output, endpoint):
    answer = client.post(endpoint, data={**GRANT, "token": "t"}, auth=("no-such-client", "x"))
    assert answer.status_code == 401
    assert [(f["client_id"], f["reason"]) for f in failures(audit_output)] == [
        ("no-such-client", "unknown_client")
    ]


def test_a_wrong_secret_is_audited_once(app, client, audit_output):
    service = new_client(app)
    answer = client.post("/oauth/token", data=GRANT, auth=(service.client_id, "wrong"))
    assert answer.status_code == 401
    assert [f["reason"] for f in failures(audit_output)] == ["bad_secret"]


def test_a_method_the_client_may_not_use_is_audited(app, client, audit_output):
    # A confidential client that presents no secret (method "none").
    service = new_client(app)
    answer = client.post("/oauth/token", data={**GRANT, "client_id": service.client_id})
    assert answer.status_code in (400, 401)
    assert [(f["client_id"], f["reason"]) for f in failures(audit_output)] == [
        (service.client_id, "wrong_method")
    ]


def test_a_public_client_at_introspection_is_a_wrong_method(app, client, audit_output):
    public = register_app(app, public=True)
    answer = client.post("/oauth/introspect", data={"token": "t", "client_id": public.client_id})
    assert answer.status_code in (400, 401)
    assert [f["reason"] for f in failures(audit_output)] == ["wrong_method"]


def test_no_credentials_at_all_is_audited(client, audit_output):
    answer = client.post("/oauth/introspect", data={"token": "t"})
    assert answer.status_code in (400, 401)
    assert [(f["client_id"], f["reason"]) for f in failures(audit_output)] == [
        (None, "missing_credentials")
    ]


def test_a_long_unknown_client_id_is_cut_in_the_log(client, audit_output):
    client.post("/oauth/token", data=GRANT, auth=("x" * 500, "y"))
    assert [len(f["client_id"]) for f in failures(audit_output)] == [64]
