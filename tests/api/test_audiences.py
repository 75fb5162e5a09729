"""Audiences (RFC 8707) and who may introspect what (RFC 7662 4).

A client's tokens carry the audiences it was registered with (default: this server's own);
a `resource` parameter narrows them to one. Introspection answers only resource servers
registered with --introspect, and only for tokens meant for one of their audiences.
"""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from flask import Flask

from idp import transaction
from idp.clock import utcnow
from idp.services.clients import ClientCommandError, create_client
from tests.api.test_oauth import Credentials
from tests.oidc_flows import ISSUER

API_A = "https://api-a.example"
API_B = "https://api-b.example"


def register(app: Flask, name: str, **options: Any) -> Credentials:
    with app.app_context():
        created = create_client(name, "read", utcnow(), **options)
        transaction.commit()
        return Credentials(created.client.client_id, created.client_secret)


def client_token(client: Any, creds: Credentials, **extra: str) -> Any:
    data = {"grant_type": "client_credentials", **extra}
    return client.post("/oauth/token", data=data, auth=creds.basic)


def audience_of(token: str) -> Any:
    return jwt.decode(token, options={"verify_signature": False})["aud"]


def introspect(client: Any, creds: Credentials, token: str) -> dict[str, Any]:
    answer = client.post("/oauth/introspect", data={"token": token}, auth=creds.basic)
    assert answer.status_code == 200, answer.json
    return answer.json


def test_a_client_without_audiences_gets_this_servers_own(app, client):
    caller = register(app, "job")
    assert audience_of(client_token(client, caller).json["access_token"]) == ISSUER


def test_tokens_name_the_registered_audiences_and_a_resource_narrows_them(app, client):
    caller = register(app, "job", audiences=[API_A, API_B])
    assert audience_of(client_token(client, caller).json["access_token"]) == [API_A, API_B]
    narrowed = client_token(client, caller, resource=API_B).json["access_token"]
    assert audience_of(narrowed) == API_B


@pytest.mark.parametrize("resource", ["https://evil.example", API_A + "/", ISSUER])
def test_a_resource_the_client_is_not_registered_for_is_invalid_target(app, client, resource):
    caller = register(app, "job", audiences=[API_A])
    answer = client_token(client, caller, resource=resource)
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_target"


def test_introspection_shows_a_token_only_to_a_resource_server_of_its_audience(app, client):
    caller = register(app, "job", audiences=[API_A])
    server_a = register(app, "api a", audiences=[API_A], introspect=True)
    server_b = register(app, "api b", audiences=[API_B], introspect=True)
    not_allowed = register(app, "api a, not a resource server", audiences=[API_A])
    token = client_token(client, caller).json["access_token"]

    shown = introspect(client, server_a, token)
    assert shown["active"] is True
    assert shown["aud"] == API_A
    assert introspect(client, server_b, token) == {"active": False}
    assert introspect(client, not_allowed, token) == {"active": False}


def test_a_default_audience_resource_server_sees_default_audience_tokens(app, client):
    caller = register(app, "job")
    server = register(app, "api", introspect=True)
    other = register(app, "api b", audiences=[API_B], introspect=True)
    token = client_token(client, caller).json["access_token"]
    assert introspect(client, server, token)["active"] is True
    assert introspect(client, other, token) == {"active": False}


def test_a_token_for_another_audience_is_not_accepted_by_this_server(app, client):
    caller = register(app, "job", audiences=[API_A])
    token = client_token(client, caller).json["access_token"]
    answer = client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401


def test_a_client_revokes_its_own_token_whatever_its_audience(app, client):
    caller = register(app, "job", audiences=[API_A])
    server_a = register(app, "api a", audiences=[API_A], introspect=True)
    token = client_token(client, caller).json["access_token"]
    revoked = client.post("/oauth/revoke", data={"token": token}, auth=caller.basic)
    assert revoked.status_code == 200
    assert introspect(client, server_a, token) == {"active": False}


@pytest.mark.parametrize(
    "audience", ["not a uri", "https://a.example/#frag", "relative/path", "https://"]
)
def test_an_audience_must_be_an_absolute_uri(app, audience):
    with app.app_context(), pytest.raises(ClientCommandError):
        create_client("job", "read", utcnow(), audiences=[audience])


def test_a_public_client_cannot_be_a_resource_server(app):
    with app.app_context(), pytest.raises(ClientCommandError, match="introspect"):
        create_client(
            "spa",
            "openid",
            utcnow(),
            kind="public",
            redirect_uris=["https://spa.example/cb"],
            introspect=True,
        )
