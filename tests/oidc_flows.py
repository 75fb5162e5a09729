"""A relying app's and a browser's steps through the authorization code flow, for the tests."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

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
) -> App:
    with app.app_context():
        created = client_service.create_client(
            "Acme Notes",
            scope,
            utcnow(),
            kind=client_service.PUBLIC if public else client_service.CONFIDENTIAL,
            redirect_uris=[redirect_uri],
            post_logout_redirect_uris=[LOGOUT_URI],
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
