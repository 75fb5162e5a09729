"""The OAuth side through the test client, in its RFC wire formats (not the /api envelope).

RFC 6749 token endpoint (client_credentials, refresh_token with rotation and reuse detection),
RFC 7662 introspection, RFC 7009 revocation, discovery and JWKS. The `clients` CLI is
tests/cli/test_clients_cli.py.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt as joserfc_jwt
from werkzeug.datastructures import MultiDict

from idp import transaction
from idp.clock import utcnow
from idp.services.clients import create_client
from tests.conftest import ISSUER
from tests.flows import API, API_CLIENT_ID, LoggedIn, logged_in_user, verify_token

TOKEN = "/oauth/token"
INTROSPECT = "/oauth/introspect"
REVOKE = "/oauth/revoke"
API_SCOPE = "profile email"


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str

    @property
    def basic(self) -> tuple[str, str]:
        return (self.client_id, self.client_secret)

    @property
    def post(self) -> dict[str, str]:
        return {"client_id": self.client_id, "client_secret": self.client_secret}


def new_client(
    app: Flask, name: str = "svc", scope: str = "read write", introspect: bool = True
) -> Credentials:
    """A service client; by default a resource server too (it may introspect)."""
    with app.app_context():
        audiences = [ISSUER] if introspect else []
        created = create_client(name, scope, utcnow(), introspect=introspect, audiences=audiences)
        transaction.commit()  # the caller owns the commit (a CLI command does)
        return Credentials(created.client.client_id, created.client_secret)


@pytest.fixture
def service(app: Flask) -> Credentials:
    """A confidential client, as a resource server or a backend job would be registered."""
    return new_client(app)


@pytest.fixture
def other_service(app: Flask) -> Credentials:
    return new_client(app, "other", "read")


@pytest.fixture
def user(client: FlaskClient, mailbox: Any) -> LoggedIn:
    return logged_in_user(client, mailbox)


def client_token(
    client: FlaskClient, creds: Credentials, method: str = "basic", **form: str
) -> Any:
    data = {"grant_type": "client_credentials", **form}
    if method == "basic":
        return client.post(TOKEN, data=data, auth=creds.basic)
    return client.post(TOKEN, data={**data, **creds.post})


def refresh(client: FlaskClient, refresh_token: str, **form: str) -> Any:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return client.post(TOKEN, data={"client_id": API_CLIENT_ID, **data, **form})


def introspect(client: FlaskClient, creds: Credentials, token: str, **form: str) -> Any:
    return client.post(INTROSPECT, data={"token": token, **form}, auth=creds.basic)


def assert_oauth_error(response: Any, status: int | tuple[int, ...], *errors: str) -> None:
    """An RFC 6749 section 5.2 error: a JSON object with `error`, never the /api envelope."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] in errors, body
    assert "success" not in body
    assert "access_token" not in body
    assert "active" not in body


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def nested_header_token() -> str:
    """A JWT-shaped string whose header is 2500 nested JSON arrays (json raises RecursionError)."""
    header = base64.urlsafe_b64encode(b"[" * 2500).rstrip(b"=").decode()
    return f"{header}.e30.e30"


GARBAGE_TOKENS = {
    "word": "garbage",
    "jwt-shaped": "e30.e30.e30",
    "alg-none": "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiJ4In0.",
    "nested-header": nested_header_token(),
    "oversized": "A" * 5000,
    "empty": "",
}


# -- client_credentials -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["basic", "post"])
def test_client_credentials_issues_a_bearer_token(client, service, method):
    response = client_token(client, service, method)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["token_type"] == "Bearer"
    assert isinstance(body["access_token"], str) and body["access_token"].count(".") == 2
    assert body["expires_in"] == 3600
    assert body["scope"] == "read write"
    # RFC 6749 4.4.3: no refresh token for client_credentials.
    assert "refresh_token" not in body
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert response.mimetype == "application/json"


def test_client_credentials_can_narrow_the_scope(client, service):
    response = client_token(client, service, scope="read")
    assert response.status_code == 200, response.json
    assert response.json["scope"] == "read"
    assert unverified(response.json["access_token"])[1]["scope"] == "read"


def test_the_access_token_verifies_offline_with_the_published_jwks(client, service):
    issued = client_token(client, service)
    assert issued.status_code == 200, issued.json
    token = issued.json["access_token"]

    jwks = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").json)
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    signing_key = jwks[header["kid"]]
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=["RS256"],
        audience=ISSUER,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    assert claims["sub"] == service.client_id
    assert claims["client_id"] == service.client_id
    assert claims["scope"] == "read write"
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int)
    assert claims["exp"] - claims["iat"] == issued.json["expires_in"]
    assert "sid" not in claims  # not a user session

    # The same bytes under another key do not verify: the JWKS really is what vouches for it.
    with pytest.raises(jwt.InvalidSignatureError):
        head, payload, _ = token.split(".")
        other = client_token(client, service).json["access_token"]
        jwt.decode(
            f"{head}.{payload}.{other.split('.')[2]}",
            signing_key.key,
            algorithms=["RS256"],
            audience=ISSUER,
            issuer=ISSUER,
        )


def test_two_tokens_have_distinct_jti(client, service):
    first = unverified(client_token(client, service).json["access_token"])[1]
    second = unverified(client_token(client, service).json["access_token"])[1]
    assert first["jti"] != second["jti"]


@pytest.mark.parametrize("method", ["basic", "post"])
def test_a_wrong_secret_is_invalid_client(client, service, method):
    wrong = Credentials(service.client_id, service.client_secret[:-1] + "x")
    response = client_token(client, wrong, method)
    assert_oauth_error(response, 401, "invalid_client")
    if method == "basic":
        assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("method", ["basic", "post"])
def test_an_unknown_client_gets_the_answer_of_a_wrong_secret(client, service, method):
    # The answer must not tell an attacker which client_ids exist.
    unknown = client_token(client, Credentials(uuid.uuid4().hex, service.client_secret), method)
    wrong = client_token(client, Credentials(service.client_id, "x" * 43), method)
    assert_oauth_error(unknown, 401, "invalid_client")
    assert unknown.status_code == wrong.status_code
    assert unknown.get_json() == wrong.get_json()
    assert unknown.headers.get("WWW-Authenticate") == wrong.headers.get("WWW-Authenticate")


@pytest.mark.parametrize("path", [INTROSPECT, REVOKE])
def test_an_unknown_client_gets_the_answer_of_a_wrong_secret_on_every_endpoint(
    client, service, path
):
    unknown = Credentials(uuid.uuid4().hex, service.client_secret)
    wrong = Credentials(service.client_id, "x" * 43)
    answers = [client.post(path, data={"token": "x"}, auth=c.basic) for c in (unknown, wrong)]
    assert_oauth_error(answers[0], 401, "invalid_client")
    assert answers[0].status_code == answers[1].status_code
    assert answers[0].get_json() == answers[1].get_json()


def test_an_unknown_public_client_id_is_invalid_client(client, user):
    form = {"grant_type": "refresh_token", "refresh_token": user.refresh_token}
    response = client.post(TOKEN, data={**form, "client_id": uuid.uuid4().hex})
    assert_oauth_error(response, 401, "invalid_client")


@pytest.mark.parametrize(
    "client_id",
    ["svc\x00", "\x00", "a" * 65, "' OR '1'='1", "%00"],
    ids=["nul-suffix", "nul", "too-long", "sql", "encoded-nul"],
)
@pytest.mark.parametrize("method", ["basic", "post"])
def test_a_hostile_client_id_is_invalid_client_not_a_server_error(
    client, service, client_id, method
):
    hostile = Credentials(client_id, service.client_secret)
    response = client_token(client, hostile, method)
    assert_oauth_error(response, 401, "invalid_client")


@pytest.mark.parametrize(
    "credentials",
    ["\u00e9\u00e9", base64.b64encode(b"\xff\xfe:\xff").decode()],
    ids=["not-ascii", "not-utf8"],
)
@pytest.mark.parametrize("path", [TOKEN, INTROSPECT, REVOKE])
def test_undecodable_basic_credentials_are_invalid_client_not_a_server_error(
    client, path, credentials
):
    data = {"grant_type": "client_credentials", "token": "x"}
    response = client.post(path, data=data, headers={"Authorization": f"Basic {credentials}"})
    assert_oauth_error(response, 401, "invalid_client")


def test_no_client_authentication_is_invalid_client(client, service):
    response = client.post(TOKEN, data={"grant_type": "client_credentials"})
    assert_oauth_error(response, 401, "invalid_client")
    response = client.post(
        TOKEN, data={"grant_type": "client_credentials", "client_id": service.client_id}
    )
    assert_oauth_error(response, 401, "invalid_client")


def test_the_public_api_client_cannot_use_client_credentials(client):
    response = client.post(
        TOKEN, data={"grant_type": "client_credentials", "client_id": API_CLIENT_ID}
    )
    assert_oauth_error(response, 401, "invalid_client", "unauthorized_client")


@pytest.mark.parametrize("scope", ["admin", "read admin", "read write admin", "READ"])
def test_a_scope_beyond_the_clients_is_invalid_scope(client, service, scope):
    assert_oauth_error(client_token(client, service, scope=scope), 400, "invalid_scope")


@pytest.mark.parametrize("order", ["allowed-first", "extra-first"])
def test_a_repeated_scope_parameter_cannot_smuggle_a_scope(client, service, order):
    """Whichever copy the server reads, what it grants is what it checked."""
    pairs = [("scope", "read"), ("scope", "read admin")]
    if order == "extra-first":
        pairs.reverse()
    data = MultiDict([("grant_type", "client_credentials"), *pairs])
    response = client.post(TOKEN, data=data, auth=service.basic)
    if response.status_code != 200:
        assert_oauth_error(response, 400, "invalid_scope", "invalid_request")
        return
    granted = response.json["scope"].split()
    assert set(granted) <= {"read", "write"}
    assert unverified(response.json["access_token"])[1]["scope"] == response.json["scope"]


@pytest.mark.parametrize(
    "grant_type",
    ["password", "implicit", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
)
def test_an_unsupported_grant_is_refused(client, service, grant_type):
    data = {"grant_type": grant_type, "username": "a@example.com", "password": "x", "code": "c"}
    response = client.post(TOKEN, data=data, auth=service.basic)
    assert_oauth_error(response, 400, "unsupported_grant_type")


def test_a_service_client_may_not_redeem_codes(client, service):
    # authorization_code exists, for clients registered with redirect URIs; a service has none.
    data = {"grant_type": "authorization_code", "code": "c", "redirect_uri": "https://a.example/"}
    response = client.post(TOKEN, data=data, auth=service.basic)
    assert_oauth_error(response, 400, "unauthorized_client")


# -- refresh_token --------------------------------------------------------------------------


def test_refresh_rotates_and_a_replay_revokes_the_family(client, user):
    first = refresh(client, user.refresh_token)
    assert first.status_code == 200, first.json
    body = first.json
    assert body["token_type"] == "Bearer"
    assert body["scope"] == API_SCOPE
    assert body["expires_in"] == 3600
    assert body["refresh_token"] != user.refresh_token
    assert body["access_token"] != user.token
    assert first.headers["Cache-Control"] == "no-store"
    assert unverified(body["access_token"])[1]["sub"] == user.user_id
    assert verify_token(client, body["access_token"]).status_code == 200

    # The thief (or the victim) replays the spent token: refused, and the family is dead.
    assert_oauth_error(refresh(client, user.refresh_token), 400, "invalid_grant")
    assert_oauth_error(refresh(client, body["refresh_token"]), 400, "invalid_grant")
    assert verify_token(client, body["access_token"]).status_code == 401
    assert verify_token(client, user.token).status_code == 401


def test_a_refresh_token_works_only_once_even_on_the_api_facade(client, user):
    """Spent at /oauth/token, it cannot be spent again at /api/v1/auth/token/refresh/."""
    assert refresh(client, user.refresh_token).status_code == 200
    again = client.post(f"{API}/token/refresh/", json={"refresh_token": user.refresh_token})
    assert again.status_code == 401
    assert again.json["code"] == "invalid_refresh_token"


def test_a_confidential_client_cannot_use_the_api_clients_refresh_token(client, service, user):
    data = {"grant_type": "refresh_token", "refresh_token": user.refresh_token}
    response = client.post(TOKEN, data=data, auth=service.basic)
    assert_oauth_error(response, 400, "invalid_grant", "unauthorized_client")
    response = client.post(TOKEN, data={**data, **service.post})
    assert_oauth_error(response, 400, "invalid_grant", "unauthorized_client")
    # The failed attempts neither spent nor revoked it: its owner still refreshes.
    assert refresh(client, user.refresh_token).status_code == 200


def test_a_confidential_client_id_without_its_secret_is_not_a_public_client(client, service, user):
    response = refresh(client, user.refresh_token, client_id=service.client_id)
    assert_oauth_error(response, 401, "invalid_client")


def test_the_public_client_cannot_present_a_secret(client, user):
    response = refresh(client, user.refresh_token, client_secret="guess")
    assert_oauth_error(response, 401, "invalid_client")


def test_refresh_cannot_widen_the_scope(client, user):
    response = refresh(client, user.refresh_token, scope="profile email admin")
    assert_oauth_error(response, 400, "invalid_scope")
    # Repeating the original scope is fine, and the refused attempt did not spend the token.
    assert refresh(client, user.refresh_token, scope="email profile").status_code == 200


@pytest.mark.parametrize("refresh_token", ["garbage", "", "x" * 5000, "a\x00b"])
def test_an_unknown_refresh_token_is_refused(client, refresh_token):
    response = refresh(client, refresh_token)
    assert_oauth_error(response, 400, "invalid_grant", "invalid_request")


def test_an_access_token_is_not_a_refresh_token(client, user):
    assert_oauth_error(refresh(client, user.token), 400, "invalid_grant")


# -- introspection (RFC 7662) -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["basic", "post"])
def test_introspecting_a_live_user_access_token(client, service, user, method):
    data = {"token": user.token, "token_type_hint": "access_token"}
    if method == "basic":
        response = client.post(INTROSPECT, data=data, auth=service.basic)
    else:
        response = client.post(INTROSPECT, data={**data, **service.post})
    assert response.status_code == 200, response.json
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body["active"] is True
    assert body["sub"] == user.user_id
    assert body["client_id"] == API_CLIENT_ID
    assert body["scope"] == API_SCOPE
    assert body["iss"] == ISSUER
    assert body["aud"] == ISSUER
    assert body["token_type"] == "Bearer"
    claims = unverified(user.token)[1]
    assert body["exp"] == claims["exp"]
    assert body["jti"] == claims["jti"]
    assert body["sid"] == claims["sid"]


def test_introspection_after_logout_is_inactive(client, service, user):
    assert introspect(client, service, user.token).json["active"] is True
    logout = client.post(f"{API}/logout/", headers=user.auth)
    assert logout.status_code == 200, logout.json
    response = introspect(client, service, user.token)
    assert response.status_code == 200
    assert response.json == {"active": False}
    assert introspect(client, service, user.refresh_token).json == {"active": False}


def test_introspecting_a_client_credentials_token(client, service, other_service):
    token = client_token(client, other_service).json["access_token"]
    body = introspect(client, service, token).json
    assert body["active"] is True
    assert body["sub"] == other_service.client_id
    assert body["client_id"] == other_service.client_id
    assert body["scope"] == "read"
    assert "sid" not in body


def test_a_client_token_naming_someone_else_as_sub_is_inactive(app, client, service, user):
    """Even signed with our real key: a token without sid is a client's, so sub must be it.

    Otherwise a token saying `client_id: svc, sub: <a user>` would be reported to resource
    servers as that user's.
    """
    kid, key = app.extensions["idp.services"].keys.signing_key()
    genuine = unverified(client_token(client, service).json["access_token"])[1]

    def sign(claims: dict[str, Any]) -> str:
        header = {"alg": "RS256", "typ": "at+jwt", "kid": kid}
        return joserfc_jwt.encode(header, claims, key, algorithms=["RS256"])

    control = sign({**genuine, "jti": "control-" + genuine["jti"]})
    assert introspect(client, service, control).json["active"] is True
    for sub in (user.user_id, API_CLIENT_ID, "someone-else"):
        forged = sign({**genuine, "jti": "forged-" + genuine["jti"], "sub": sub})
        assert introspect(client, service, forged).json == {"active": False}, sub


@pytest.mark.parametrize("name", list(GARBAGE_TOKENS))
def test_introspecting_garbage_is_inactive(client, service, name):
    response = introspect(client, service, GARBAGE_TOKENS[name])
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json == {"active": False}


def test_a_resource_server_cannot_introspect_a_users_refresh_token(client, service, user):
    # RFC 7662 section 4: refresh tokens are for the client they were issued to, not for
    # resource servers; to anyone else such a token is simply not active.
    assert introspect(client, service, user.refresh_token).json == {"active": False}
    # ...while the user's access token is what a resource server may look at.
    assert introspect(client, service, user.token).json["active"] is True


def test_introspection_needs_client_authentication(client, service, user):
    response = client.post(INTROSPECT, data={"token": user.token})
    assert_oauth_error(response, 401, "invalid_client")
    wrong = Credentials(service.client_id, "wrong-secret")
    assert_oauth_error(introspect(client, wrong, user.token), 401, "invalid_client")


def test_the_public_api_client_cannot_introspect(client, user):
    for request in (
        {"data": {"token": user.token, "client_id": API_CLIENT_ID}},
        {"data": {"token": user.token, "client_id": API_CLIENT_ID, "client_secret": "x"}},
        {"data": {"token": user.token}, "auth": (API_CLIENT_ID, "x")},
    ):
        response = client.post(INTROSPECT, **request)
        assert_oauth_error(response, 401, "invalid_client")


@pytest.mark.parametrize("path", [INTROSPECT, REVOKE])
def test_an_unknown_token_type_hint_is_a_400_for_an_authenticated_client(client, service, path):
    """RFC 6749 5.2: only invalid_client is a 401; a client that did authenticate gets a 400."""
    response = client.post(
        path, data={"token": "x", "token_type_hint": "id_token"}, auth=service.basic
    )
    assert_oauth_error(response, 400, "unsupported_token_type")


def test_introspection_without_a_token_is_invalid_request(client, service):
    response = client.post(INTROSPECT, data={}, auth=service.basic)
    assert_oauth_error(response, 400, "invalid_request")


# -- revocation (RFC 7009) --------------------------------------------------------------------


def test_revoking_an_access_token(client, service, user):
    response = client.post(REVOKE, data={"token": user.token, "client_id": API_CLIENT_ID})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert verify_token(client, user.token).status_code == 401
    assert introspect(client, service, user.token).json == {"active": False}


def test_revoking_a_refresh_token_ends_its_whole_session(client, service, user):
    data = {"token": user.refresh_token, "token_type_hint": "refresh_token"}
    response = client.post(REVOKE, data={**data, "client_id": API_CLIENT_ID})
    assert response.status_code == 200, response.get_data(as_text=True)
    # The access token minted at the same login is dead too, and so is the refresh token.
    assert verify_token(client, user.token).status_code == 401
    assert_oauth_error(refresh(client, user.refresh_token), 400, "invalid_grant")
    assert introspect(client, service, user.refresh_token).json == {"active": False}
    assert introspect(client, service, user.token).json == {"active": False}


def test_a_confidential_client_revokes_its_own_token(client, service):
    token = client_token(client, service).json["access_token"]
    response = client.post(REVOKE, data={"token": token}, auth=service.basic)
    assert response.status_code == 200
    assert introspect(client, service, token).json == {"active": False}


@pytest.mark.parametrize("name", list(GARBAGE_TOKENS))
def test_revoking_garbage_is_ok(client, name):
    data = {"token": GARBAGE_TOKENS[name], "client_id": API_CLIENT_ID}
    response = client.post(REVOKE, data=data)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_revocation_needs_a_client(client, user):
    response = client.post(REVOKE, data={"token": user.token})
    assert_oauth_error(response, 401, "invalid_client")
    assert verify_token(client, user.token).status_code == 200


def test_a_client_cannot_revoke_another_clients_tokens(client, service, other_service, user):
    others_token = client_token(client, other_service).json["access_token"]

    # A confidential client against the user's tokens (issued to idp-api)...
    for token in (user.token, user.refresh_token):
        response = client.post(REVOKE, data={"token": token}, auth=service.basic)
        assert_oauth_error(response, 400, "invalid_grant", "unauthorized_client")
    # ...against another confidential client's token...
    response = client.post(REVOKE, data={"token": others_token}, auth=service.basic)
    assert_oauth_error(response, 400, "invalid_grant", "unauthorized_client")
    # ...and anyone calling as the secret-less public client against a confidential one's.
    response = client.post(REVOKE, data={"token": others_token, "client_id": API_CLIENT_ID})
    assert_oauth_error(response, 400, "invalid_grant", "unauthorized_client")

    # Nothing was revoked.
    assert verify_token(client, user.token).status_code == 200
    assert introspect(client, service, others_token).json["active"] is True
    assert refresh(client, user.refresh_token).status_code == 200


# -- discovery and JWKS -----------------------------------------------------------------------


def test_discovery_document(client):
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    doc = response.json
    assert doc["issuer"] == ISSUER
    assert doc["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert doc["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert doc["revocation_endpoint"] == f"{ISSUER}/oauth/revoke"
    assert doc["introspection_endpoint"] == f"{ISSUER}/oauth/introspect"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "none" not in doc["introspection_endpoint_auth_methods_supported"]
    assert set(doc["grant_types_supported"]) == {
        "authorization_code",
        "client_credentials",
        "refresh_token",
    }
    # Every endpoint it names exists on this server.
    for name in ("jwks_uri",):
        assert client.get(doc[name].removeprefix(ISSUER)).status_code == 200
    assert client.get(doc["authorization_endpoint"].removeprefix(ISSUER)).status_code == 400
    assert client.get(doc["end_session_endpoint"].removeprefix(ISSUER)).status_code == 200
    assert client.get(doc["userinfo_endpoint"].removeprefix(ISSUER)).status_code == 401
    for name in ("token_endpoint", "revocation_endpoint", "introspection_endpoint"):
        assert client.post(doc[name].removeprefix(ISSUER)).status_code != 404


PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def test_jwks_publishes_only_public_members(client, app, user):
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    keys = response.json["keys"]
    assert keys
    for key in keys:
        assert not PRIVATE_MEMBERS & key.keys(), key
        assert key["kty"] == "RSA"
        assert key["kid"]
        assert key["alg"] == "RS256"
        assert key["use"] == "sig"
        assert {"n", "e"} <= key.keys()
    raw = response.get_data(as_text=True)
    for member in PRIVATE_MEMBERS:
        assert f'"{member}"' not in raw
    # The kid that signs tokens is among them.
    assert unverified(user.token)[0]["kid"] in {key["kid"] for key in keys}


def test_jwks_is_cacheable_and_conditional(client):
    response = client.get("/.well-known/jwks.json")
    cache_control = response.headers["Cache-Control"]
    match = re.search(r"max-age=(\d+)", cache_control)
    assert match and int(match.group(1)) > 0, cache_control
    assert "no-store" not in cache_control
    etag = response.headers["ETag"]
    assert etag

    not_modified = client.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.get_data() == b""
    assert not_modified.headers["ETag"] == etag

    changed = client.get("/.well-known/jwks.json", headers={"If-None-Match": '"stale"'})
    assert changed.status_code == 200
    assert json.loads(changed.get_data()) == response.json


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
def test_a_repeated_parameter_is_an_invalid_request(client, path):
    response = client.post(
        path,
        data="grant_type=client_credentials&token=a&token=b&scope=x&scope=y",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
@pytest.mark.parametrize(
    "query", ["scope=read", "grant_type=refresh_token", "token=x", "anything=1"]
)
def test_parameters_in_the_query_string_are_an_invalid_request(client, service, path, query):
    # With the same parameter in the body too, which copy would count? None: the request is
    # refused before any of it is read, and nothing is issued or revoked.
    form = {"grant_type": "client_credentials", "scope": "write", "token": "y"}
    response = client.post(f"{path}?{query}", data=form, auth=service.basic)
    assert_oauth_error(response, 400, "invalid_request")
    assert response.headers["Cache-Control"] == "no-store"


def test_rfc8414_metadata_address_serves_the_same_document(client):
    oidc = client.get("/.well-known/openid-configuration")
    rfc8414 = client.get("/.well-known/oauth-authorization-server")
    assert rfc8414.status_code == 200
    assert rfc8414.json == oidc.json
