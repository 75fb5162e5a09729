"""The OpenAPI document: valid OpenAPI 3.1, served, and true to every route and real answer.

A scripted journey makes every answer the document promises (except 500) and checks each one
against the schema, required headers and media type documented for its status; an answer with an
undocumented status fails, and so does a documented status the journey never produced.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from idp import transaction
from idp.clock import utcnow
from idp.services.clients import create_client
from tests.conftest import ISSUER
from tests.flows import API, API_CLIENT_ID, PASSWORD, register_and_verify, settle, unique_email
from tests.oidc_flows import (
    LOGOUT_URI,
    ORIGIN,
    authorize_params,
    csrf_token,
    follow_to_app,
    hidden,
    pkce,
    query_of,
    redeem,
    register_app,
    sign_in,
    start,
)

DOCUMENT_PATH = "/api/v1/openapi.json"
DOCUMENTED_PREFIXES = ("/api/", "/oauth/", "/.well-known/")
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
UNLISTED_METHODS = {"HEAD", "OPTIONS"}  # answered by Flask (and CORS) for every route
BASE_URI = "urn:idp:openapi"
# A crash cannot be scripted; the fuzzing in test_fuzz_openapi.py looks for them instead.
# A database outage is scripted in test_database_unavailable.py, against this same document.
UNSCRIPTED_STATUSES = {"500", "503"}


def load_document() -> dict[str, Any]:
    return json.loads(files("idp.api").joinpath("openapi.json").read_text())


def escape(token: str) -> str:
    """RFC 6901: escape one JSON Pointer token."""
    return token.replace("~", "~0").replace("/", "~1")


class Contract:
    """Checks answers against the document and remembers which statuses it has seen."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = DRAFT202012.create_resource(document)
        self.registry = Registry().with_resource(BASE_URI, resource)
        self.seen: set[tuple[str, str, str]] = set()

    def _resolve(self, pointer: str) -> tuple[str, dict[str, Any]]:
        """Follow `$ref`s from a pointer into the document; return the final pointer and value."""
        value: Any = self.document
        for token in pointer.lstrip("/").split("/"):
            value = value[token.replace("~1", "/").replace("~0", "~")]
        if "$ref" in value:
            return self._resolve(value["$ref"].removeprefix("#"))
        return pointer, value

    def _validate(self, pointer: str, instance: Any) -> None:
        validator = Draft202012Validator(
            {"$ref": f"{BASE_URI}#{pointer}"},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        errors = sorted(validator.iter_errors(instance), key=lambda error: error.path)
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)

    def check(self, method: str, path: str, response: Any) -> Any:
        method = method.lower()
        status = str(response.status_code)
        label = f"{method.upper()} {path} -> {status}"
        responses = self.document["paths"][path][method]["responses"]
        assert status in responses, f"{label} is not documented: {response.get_data(as_text=True)}"
        pointer, answer = self._resolve(f"/paths/{escape(path)}/{method}/responses/{status}")

        content = answer.get("content")
        if content is None:
            assert response.get_data() == b"", f"{label}: documented without a body"
        else:
            assert response.mimetype in content, f"{label}: undocumented {response.mimetype}"
            schema = f"{pointer}/content/{escape(response.mimetype)}/schema"
            # A page is validated as the string it is; anything else is JSON.
            body = response.get_json() if response.is_json else response.get_data(as_text=True)
            try:
                self._validate(schema, body)
            except AssertionError as exc:
                raise AssertionError(f"{label} breaks its schema:\n{exc}") from None

        for name, header in answer.get("headers", {}).items():
            header_pointer, header = self._resolve(f"{pointer}/headers/{escape(name)}")
            value = response.headers.get(name)
            if value is None:
                assert not header.get("required"), f"{label}: required header {name} missing"
                continue
            if header["schema"].get("type") == "integer":
                value = int(value)
            self._validate(f"{header_pointer}/schema", value)

        self.seen.add((method, path, status))
        return response

    def unseen(self) -> list[str]:
        """Documented statuses that no checked answer had."""
        return [
            f"{method.upper()} {path} {status}"
            for path, item in self.document["paths"].items()
            for method, operation in item.items()
            if method in HTTP_METHODS
            for status in operation["responses"]
            if status not in UNSCRIPTED_STATUSES and (method, path, status) not in self.seen
        ]


class Caller:
    """A test client whose every answer goes through the contract."""

    def __init__(self, client: FlaskClient, contract: Contract) -> None:
        self.client = client
        self.contract = contract

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.contract.check("get", path, self.client.get(path, **kwargs))

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.contract.check("post", path, self.client.post(path, **kwargs))

    def delete(self, template: str, path: str, **kwargs: Any) -> Any:
        """DELETE `path`, checked against the document's `template` ({name} parameters)."""
        return self.contract.check("delete", template, self.client.delete(path, **kwargs))


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return load_document()


# -- the document itself ----------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(document):
    validate_openapi(document)
    assert document["openapi"] == "3.1.0"


def test_the_document_is_served_and_cacheable(client, document):
    response = client.get(DOCUMENT_PATH)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json == document
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert "Pragma" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # Everything else under /api/ stays out of caches.
    assert client.get(f"{API}/verify-token/").headers["Cache-Control"] == "no-store"


def test_every_route_is_documented_with_exactly_its_methods(app: Flask, document):
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(DOCUMENTED_PREFIXES):
            # Werkzeug writes a path parameter <name>, OpenAPI {name}.
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            routes.setdefault(path, set()).update((rule.methods or set()) - UNLISTED_METHODS)
    documented = {
        path: {method.upper() for method in item if method in HTTP_METHODS}
        for path, item in document["paths"].items()
    }
    assert routes == documented


# -- real answers -----------------------------------------------------------------------------


@pytest.fixture
def contract(document) -> Contract:
    return Contract(document)


def mail_token(mailbox: Any, email: str, link: str) -> str:
    """The token of the latest mail to `email` whose link goes to the frontend's `link` page."""
    return [mail for mail in mailbox.to(email) if f"/{link}?token=" in mail.text][-1].token


def auth_journey(api: Caller, mailbox: Any) -> None:
    """Register, verify, log in, refresh, check, reset, log out: successes and their failures."""
    email = unique_email("journey")
    account = {"email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace"}
    user_id = api.post(f"{API}/register/", json=account).json["data"]["user_id"]
    api.post(f"{API}/register/", json={**account, "email": email.upper()})  # 409
    api.post(f"{API}/register/", json={**account, "password": "short"})  # 400 policy
    api.post(f"{API}/login/", json={"email": email, "password": PASSWORD})  # 403
    api.post(f"{API}/resend-verification/", json={"email": email})
    api.post(f"{API}/resend-verification/", json={"email": "not an address"})  # 400

    settle(api.client)
    token = mail_token(mailbox, email, "verify-email")
    api.post(f"{API}/verify-email/", json={"token": token})
    api.post(f"{API}/verify-email/", json={"token": token})  # 400 spent

    api.post(f"{API}/login/", json={"email": email, "password": "Wrong-Horse-7"})  # 401
    api.post(f"{API}/login/", json=[email])  # 400 not an object
    pair = api.post(f"{API}/login/", json={"email": email, "password": PASSWORD}).json["data"]
    assert pair["user"]["id"] == user_id
    bearer = {"Authorization": f"Bearer {pair['token']}"}
    api.get(f"{API}/verify-token/", headers=bearer)
    api.get(f"{API}/verify-token/")  # 401 missing
    api.get(f"{API}/verify-token/", headers={"Authorization": "Bearer not-a-jwt"})  # 401

    fresh = api.post(f"{API}/token/refresh/", json={"refresh_token": pair["refresh_token"]})
    pair = fresh.json["data"]
    api.post(f"{API}/token/refresh/", json={"refresh_token": "x" * 43})  # 401
    api.post(f"{API}/token/refresh/", json={"refresh_token": "not base64!"})  # 400

    bearer = {"Authorization": f"Bearer {pair['token']}"}
    other = {"token": pair["token"], "refresh_token": "y" * 43}
    api.post(f"{API}/logout/", json=other)  # 400 token_mismatch
    api.post(f"{API}/logout/")  # 401 missing
    api.post(f"{API}/logout/", headers=bearer)

    api.post(f"{API}/password-reset/", json={"email": email})
    api.post(f"{API}/password-reset/", json={})  # 400
    settle(api.client)
    reset = mail_token(mailbox, email, "reset-password")
    confirm = f"{API}/password-reset-confirm/"
    api.post(confirm, json={"token": reset, "new_password": "weak"})  # 400, link still usable
    api.post(confirm, json={"token": reset, "new_password": "Another-Horse-8"})
    api.post(confirm, json={"token": reset, "new_password": "Another-Horse-8"})  # 400 spent


JSON_ENDPOINTS = [
    "register/",
    "verify-email/",
    "resend-verification/",
    "login/",
    "token/refresh/",
    "logout/",
    "password-reset/",
    "password-reset-confirm/",
]
OAUTH_ENDPOINTS = ["/oauth/token", "/oauth/revoke", "/oauth/introspect"]


def refused_bodies(api: Caller, limit: int) -> None:
    """413 and 415 on every endpoint that reads a body."""
    for name in JSON_ENDPOINTS:
        path = f"{API}/{name}"
        api.post(path, data="x=1", content_type="application/x-www-form-urlencoded")  # 415
        api.post(path, data="{" + " " * limit + "}", content_type="application/json")  # 413
    for path in OAUTH_ENDPOINTS:
        api.post(path, data={"token": "t" * limit, "grant_type": "client_credentials"})  # 413


def oauth_journey(app: Flask, api: Caller, mailbox: Any) -> None:
    """Tokens for a confidential client and the public one; introspection and revocation."""
    with app.app_context():
        created = create_client("svc", "read write", utcnow(), introspect=True, audiences=[ISSUER])
        transaction.commit()  # the caller owns the commit (a CLI command does)
        basic = (created.client.client_id, created.client_secret)
    bad_basic = (created.client.client_id, "nope")

    granted = api.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=basic)
    issued = granted.json["access_token"]
    api.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=bad_basic)  # 401
    api.post("/oauth/token", data={"grant_type": "password"}, auth=basic)  # 400

    email = unique_email("oauth")
    register_and_verify(api.client, mailbox, email)
    login = {"email": email, "password": PASSWORD}
    pair = api.post(f"{API}/login/", json=login).json["data"]
    public = {"client_id": API_CLIENT_ID}
    refreshed = api.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"], **public},
    ).json

    introspect = "/oauth/introspect"
    for token in (issued, refreshed["access_token"], refreshed["refresh_token"], "garbage"):
        api.post(introspect, data={"token": token}, auth=basic)
    api.post(introspect, data={"token": issued}, auth=bad_basic)  # 401
    api.post(introspect, data={"token": issued, "token_type_hint": "id_token"}, auth=basic)

    api.post("/oauth/revoke", data={"token": refreshed["access_token"], **public})
    api.post("/oauth/revoke", data={"token": issued, **public})  # 400 another client's
    api.post("/oauth/revoke", data={"token": issued})  # 401 no client
    api.post(introspect, data={"token": refreshed["access_token"]}, auth=basic)  # inactive


def openid_journey(app: Flask, api: Caller, mailbox: Any) -> None:
    """The authorization code flow, userinfo and sign-out: successes and their failures."""
    email = unique_email("openid")
    register_and_verify(api.client, mailbox, email)
    relying = register_app(app, public=True, first_party=True)
    verifier, challenge = pkce()
    params = authorize_params(relying, challenge, login_hint=email)
    api.get("/oauth/authorize", query_string=params)  # 303 to sign in
    api.get("/oauth/authorize", query_string={**params, "client_id": "nobody"})  # 400 page
    api.post("/oauth/authorize", data=params)  # 303: an app may POST from its own site
    api.post("/oauth/authorize", data={"state": "x" * 70_000}, headers=ORIGIN)  # 413
    to_sign_in = api.get("/oauth/authorize", query_string=params).headers["Location"]
    signed_in = sign_in(api.client, to_sign_in, email)
    back = query_of(signed_in.headers["Location"])
    api.get("/oauth/authorize/continue", query_string=back)  # 303 with a code
    api.post("/oauth/authorize", data=params, headers=ORIGIN)  # 303 with a code
    api.post("/oauth/authorize", data={**params, "client_id": "nobody"}, headers=ORIGIN)  # 400
    api.get("/oauth/authorize/continue", query_string={"interaction": "forged"})  # 400 page
    code_response = api.get("/oauth/authorize", query_string=params)
    code = query_of(code_response.headers["Location"])["code"]
    api.get("/oauth/authorize/continue")  # 400
    tokens = redeem(api.client, relying, code, verifier).json
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    api.get("/oauth/userinfo", headers=auth)
    api.post("/oauth/userinfo", headers=auth)
    api.get("/oauth/userinfo")  # 401
    api.post("/oauth/userinfo", headers={"Authorization": "Bearer nope"})  # 401
    api_token = {"Authorization": f"Bearer {login_token(api.client, email)}"}
    api.get("/oauth/userinfo", headers=api_token)  # 403: no openid scope
    api.post("/oauth/userinfo", headers=api_token)  # 403
    api.post("/oauth/userinfo", headers=auth, data={"x": "y" * 70_000})  # 413

    api.get(
        "/oauth/logout", query_string={"post_logout_redirect_uri": "https://evil.example/"}
    )  # 400
    page = api.get("/oauth/logout")  # 200: asks to confirm
    form = {"csrf_token": csrf_token(page.text), "logout": hidden(page.text, "logout")}
    api.post("/oauth/logout", data=form)  # 403: no Origin
    api.post("/oauth/logout", data={"x": "y" * 70_000}, headers=ORIGIN)  # 413
    api.post("/oauth/logout", data={"logout": ""}, headers=ORIGIN)  # 400: no CSRF token
    api.post("/oauth/logout", data=form, headers=ORIGIN)  # 200 signed out
    sign_in(api.client, f"/signin?{urlencode({'interaction': ''})}", email)
    hint = {
        "id_token_hint": tokens["id_token"],
        "post_logout_redirect_uri": LOGOUT_URI,
        "state": "s",
    }
    # The hint names the session that ended: the user is asked (200), then sent back (303).
    page = api.get("/oauth/logout", query_string=hint)
    form = {"csrf_token": csrf_token(page.text), "logout": hidden(page.text, "logout")}
    consents_journey(api, email, relying.client_id)
    done = api.post("/oauth/logout", data=form, headers=ORIGIN)  # 303 to the app
    assert done.headers["Location"] == f"{LOGOUT_URI}?state=s", done.text
    # A hint that names the live session signs out at once.
    tokens = redeem(api.client, relying, code_for(api, params), verifier).json
    api.get("/oauth/logout", query_string={**hint, "id_token_hint": tokens["id_token"]})  # 303


def consents_journey(api: Caller, email: str, first_party: str) -> None:
    """List and withdraw approvals: a third-party app the user approved on the consent page."""
    third = register_app(api.client.application, public=True)
    _, challenge = pkce()
    follow_to_app(api.client, start(api.client, authorize_params(third, challenge)), email)
    auth = {"Authorization": f"Bearer {login_token(api.client, email)}"}
    listed = api.get(f"{API}/consents/", headers=auth).json["data"]["consents"]
    assert [c["client_id"] for c in listed] == [third.client_id]  # first-party: never asked
    api.get(f"{API}/consents/")  # 401
    template = f"{API}/consents/{{client_id}}/"
    api.delete(template, f"{API}/consents/{third.client_id}/", headers=auth)
    api.delete(template, f"{API}/consents/{third.client_id}/", headers=auth)  # 404
    api.delete(template, f"{API}/consents/{first_party}/")  # 401


def code_for(api: Caller, params: dict[str, str]) -> str:
    sign_in(api.client, f"/signin?{urlencode({'interaction': ''})}", params["login_hint"])
    answer = api.get("/oauth/authorize", query_string=params)
    return query_of(answer.headers["Location"])["code"]


def login_token(client: FlaskClient, email: str) -> str:
    response = client.post(f"{API}/login/", json={"email": email, "password": PASSWORD})
    return response.json["data"]["token"]


def discovery(api: Caller) -> None:
    etag = api.get("/.well-known/jwks.json").headers["ETag"]
    api.get("/.well-known/jwks.json", headers={"If-None-Match": etag})  # 304
    api.get("/.well-known/openid-configuration")
    api.get("/.well-known/oauth-authorization-server")
    api.get(DOCUMENT_PATH)


def rate_limited(make_app: Any, contract: Contract) -> None:
    """429 on every limited endpoint, from an app whose limits allow one request a minute."""
    limits = ("AUTH", "SESSION", "VERIFY", "OAUTH")
    app = make_app(
        IDP_RATELIMIT_ENABLED=True, **{f"IDP_RATELIMIT_{name}": "1 per minute" for name in limits}
    )
    api = Caller(app.test_client(), contract)
    for name in JSON_ENDPOINTS:
        for _ in range(2):
            api.post(f"{API}/{name}", json={})
    for _ in range(2):
        api.get(f"{API}/verify-token/")
    for _ in range(2):
        api.get(f"{API}/consents/")
    for _ in range(2):
        api.delete(f"{API}/consents/{{client_id}}/", f"{API}/consents/x/")
    for path in OAUTH_ENDPOINTS:
        for _ in range(2):
            api.post(path, data={"grant_type": "client_credentials", "token": "t"})


def test_every_answer_matches_the_document(app, client, make_app, mailbox, contract):
    api = Caller(client, contract)
    auth_journey(api, mailbox)
    refused_bodies(api, app.config["MAX_CONTENT_LENGTH"])
    oauth_journey(app, api, mailbox)
    openid_journey(app, api, mailbox)
    discovery(api)
    rate_limited(make_app, contract)
    assert contract.unseen() == []


def test_an_undocumented_status_fails_the_contract(client, contract):
    response = client.post(f"{API}/verify-token/")  # 405: routing answers are not per route
    assert response.status_code == 405
    with pytest.raises(AssertionError, match="is not documented"):
        contract.check("get", f"{API}/verify-token/", response)
