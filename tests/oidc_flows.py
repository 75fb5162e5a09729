"""A relying app's and a browser's steps through the authorization code flow, for the tests."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from flask import Flask
from flask.testing import FlaskClient

from idp.clock import utcnow
from idp.services import clients as client_service
from idp.transaction import commit
from tests.flows import PASSWORD

ISSUER = "http://idp.test"
ORIGIN = {"Origin": ISSUER}
REDIRECT_URI = "https://app.example/callback"
LOGOUT_URI = "https://app.example/signed-out"


@dataclass
class App:
    """A registered relying app."""

    client_id: str
    client_secret: str
    redirect_uri: str
    public: bool

    def token_auth(self) -> dict[str, Any]:
        if self.public:
            return {"data": {"client_id": self.client_id}}
        raw = f"{self.client_id}:{self.client_secret}".encode()
        return {"headers": {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}}


def register_app(
    app: Flask,
    *,
    public: bool = False,
    scope: str = "openid profile email offline_access",
    first_party: bool = False,
    redirect_uri: str = REDIRECT_URI,
    name: str = "Acme Notes",
    post_logout_redirect_uri: str = LOGOUT_URI,
) -> App:
    with app.app_context():
        created = client_service.create_client(
            name,
            scope,
            utcnow(),
            kind=client_service.PUBLIC if public else client_service.CONFIDENTIAL,
            redirect_uris=[redirect_uri],
            post_logout_redirect_uris=[post_logout_redirect_uri],
            first_party=first_party,
        )
        commit()
    return App(created.client.client_id, created.client_secret, redirect_uri, public)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def authorize_params(relying: App, challenge: str | None, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": relying.client_id,
        "redirect_uri": relying.redirect_uri,
        "scope": "openid profile email",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
    }
    if challenge is not None:
        params["code_challenge"] = challenge
        params["code_challenge_method"] = "S256"
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" type="hidden" value="([^"]*)"', html)
    assert found, html
    return found.group(1)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def sign_in(browser: FlaskClient, location: str, email: str, password: str = PASSWORD) -> Any:
    """Fill in the sign-in page that `location` leads to; return the POST's response."""
    page = browser.get(location)
    assert page.status_code == 200, page.text
    html = page.text
    return browser.post(
        "/signin",
        data={
            "csrf_token": csrf_token(html),
            "interaction": hidden(html, "interaction"),
            "email": email,
            "password": password,
        },
        headers=ORIGIN,
    )


def consent(browser: FlaskClient, location: str, approve: bool = True) -> Any:
    page = browser.get(location)
    assert page.status_code == 200, page.text
    html = page.text
    decision = {"approve": "Allow"} if approve else {"deny": "Deny"}
    return browser.post(
        "/consent",
        data={
            "csrf_token": csrf_token(html),
            "interaction": hidden(html, "interaction"),
            "account": hidden(html, "account"),
            **decision,
        },
        headers=ORIGIN,
    )


def follow_to_app(browser: FlaskClient, response: Any, email: str, approve: bool = True) -> Any:
    """Follow idp's redirects, signing in and consenting when asked, until one leaves idp."""
    for _ in range(10):
        assert response.status_code in (302, 303), (response.status_code, response.text)
        location = response.headers["Location"]
        if not location.startswith("/") and not location.startswith(ISSUER):
            return response
        path = urlsplit(location).path
        if path == "/signin":
            response = sign_in(browser, location, email)
        elif path == "/consent":
            response = consent(browser, location, approve)
        else:
            response = browser.get(location)
    raise AssertionError("too many redirects")


def start(browser: FlaskClient, params: dict[str, str]) -> Any:
    return browser.get(f"/oauth/authorize?{urlencode(params)}")


def redeem(client: FlaskClient, relying: App, code: str, verifier: str | None) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": relying.redirect_uri}
    if verifier is not None:
        data["code_verifier"] = verifier
    auth = relying.token_auth()
    data.update(auth.get("data", {}))
    return client.post("/oauth/token", data=data, headers=auth.get("headers", {}))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def code_through_browser(
    browser: FlaskClient, relying: App, email: str, challenge: str | None, **extra: str
) -> tuple[str, dict[str, str]]:
    """Sign in (and consent) through the pages; return the code and the request's parameters."""
    params = authorize_params(relying, challenge, **extra)
    answer = follow_to_app(browser, start(browser, params), email)
    query = query_of(answer.headers["Location"])
    assert "code" in query, query
    return query["code"], params


def id_token_claims(client: FlaskClient, id_token: str, audience: str) -> dict[str, Any]:
    """Verify an ID token as a relying app does (PyJWT, the published JWKS); return its claims."""
    kid = jwt.get_unverified_header(id_token)["kid"]
    keys = client.get("/.well-known/jwks.json").json["keys"]
    (jwk,) = [key for key in keys if key["kid"] == kid]
    return jwt.decode(
        id_token,
        jwt.PyJWK(jwk).key,
        algorithms=["RS256"],
        audience=audience,
        issuer=ISSUER,
        options={"require": ["iss", "sub", "aud", "exp", "iat"]},
    )


def tampered(token: str, change: Callable[[dict[str, Any]], None]) -> str:
    """An itsdangerous token (an interaction, a sign-out form) with its payload edited and its
    timestamp and signature kept: what an attacker who can read the token can make of it."""
    payload, timestamp, signature = token.rsplit(".", 2)
    compressed = payload.startswith(".")
    raw = base64.urlsafe_b64decode(payload.lstrip(".") + "=" * (-len(payload.lstrip(".")) % 4))
    data = json.loads(zlib.decompress(raw) if compressed else raw)
    change(data)
    encoded = json.dumps(data, separators=(",", ":")).encode()
    body = base64.urlsafe_b64encode(encoded).rstrip(b"=").decode()
    return f"{body}.{timestamp}.{signature}"
