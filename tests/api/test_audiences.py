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
from idp.services import clients as client_service
from idp.services.clients import ClientCommandError, create_client
from tests.api.test_oauth import Credentials
from tests.flows import register_and_verify, unique_email
from tests.oidc_flows import (
    ISSUER,
    REDIRECT_URI,
    App,
    authorize_params,
    follow_to_app,
    pkce,
    query_of,
    start,
)

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


def test_a_resource_server_of_idps_own_audience_sees_default_audience_tokens(app, client):
    caller = register(app, "job")
    server = register(app, "api", introspect=True, audiences=[ISSUER])
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


# -- the authorization code flow -----------------------------------------------------------


def code_flow_app(app: Flask, audiences: list[str]) -> Any:
    with app.app_context():
        created = create_client(
            "Acme",
            "openid email",
            utcnow(),
            kind=client_service.PUBLIC,
            redirect_uris=[REDIRECT_URI],
            first_party=True,
            audiences=audiences,
        )
        transaction.commit()
    return App(created.client.client_id, "", REDIRECT_URI, True)


@pytest.fixture
def signed_in(client: Any, mailbox: Any) -> str:
    email = unique_email("aud")
    register_and_verify(client, mailbox, email)
    return email


def code_tokens(
    client: Any, relying: Any, email: str, token_resource: str | None = None, **extra: str
) -> Any:
    verifier, challenge = pkce()
    landed = follow_to_app(
        client, start(client, authorize_params(relying, challenge, **extra)), email
    )
    query = query_of(landed.headers["Location"])
    if "code" not in query:
        return query
    data = {"grant_type": "authorization_code", "code": query["code"]}
    data.update(
        redirect_uri=relying.redirect_uri, code_verifier=verifier, client_id=relying.client_id
    )
    if token_resource is not None:
        data["resource"] = token_resource
    return client.post("/oauth/token", data=data)


def test_a_code_flow_token_carries_the_resource_the_authorization_asked_for(app, client, signed_in):
    relying = code_flow_app(app, [API_A, API_B])
    answer = code_tokens(client, relying, signed_in, resource=API_B)
    assert answer.status_code == 200, answer.json
    assert audience_of(answer.json["access_token"]) == API_B
    # The ID token is for the app itself, whatever the access token's audience.
    assert jwt.decode(answer.json["id_token"], options={"verify_signature": False})["aud"] == (
        relying.client_id
    )


def test_an_unregistered_resource_at_authorize_goes_back_as_invalid_target(app, client, signed_in):
    relying = code_flow_app(app, [API_A])
    query = code_tokens(client, relying, signed_in, resource="https://evil.example")
    assert query["error"] == "invalid_target"
    assert query["iss"] == ISSUER


def test_the_token_request_cannot_widen_the_authorizations_resource(app, client, signed_in):
    relying = code_flow_app(app, [API_A, API_B])
    answer = code_tokens(client, relying, signed_in, token_resource=API_A, resource=API_B)
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_target"


def test_a_resource_server_sees_a_code_flow_token_meant_for_it_and_no_other(app, client, signed_in):
    relying = code_flow_app(app, [API_A])
    server_a = register(app, "api a", audiences=[API_A], introspect=True)
    server_b = register(app, "api b", audiences=[API_B], introspect=True)
    token = code_tokens(client, relying, signed_in).json["access_token"]
    assert introspect(client, server_a, token)["sub"]
    assert introspect(client, server_b, token) == {"active": False}


def test_a_resource_server_must_name_its_audience(app):
    # Without one it would see every token of the default audience, every app's included.
    with app.app_context(), pytest.raises(ClientCommandError, match="--audience"):
        create_client("api", "read", utcnow(), introspect=True)
