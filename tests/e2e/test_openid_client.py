"""A relying app as a developer writes it, with Authlib's own client, against real gunicorn.

The app reads every endpoint from the discovery document and uses
`authlib.integrations.requests_client.OAuth2Session` (PKCE S256). The user's part (sign in,
consent) is a `requests.Session` walking the hosted pages as a browser would; the last redirect,
to the app, is not followed but handed to `fetch_token`. The ID token is checked with PyJWT
against the JWKS, as any relying app would.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import jwt
import pytest
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from tests.e2e.conftest import REQUEST_TIMEOUT, Gunicorn
from tests.flows import PASSWORD
from tests.support import free_port

pytestmark = pytest.mark.e2e

ALL_SCOPES = "openid profile email offline_access"
ID_TOKEN_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid"]


@dataclass(frozen=True)
class Registered:
    """A client as the admin registered it, and what its developer configures."""

    client_id: str
    client_secret: str | None
    redirect_uri: str
    scope: str

    def session(self, discovery: dict[str, Any]) -> OAuth2Session:
        """The app's OAuth client, configured from the discovery document."""
        method = "client_secret_basic" if self.client_secret else "none"
        assert method in discovery["token_endpoint_auth_methods_supported"]
        assert "S256" in discovery["code_challenge_methods_supported"]
        return OAuth2Session(
            self.client_id,
            self.client_secret,
            scope=self.scope,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method=method,
            default_timeout=REQUEST_TIMEOUT,
        )


@dataclass
class Authorization:
    """One authorization request the app started: what it must check the answer against."""

    url: str
    state: str
    nonce: str
    code_verifier: str


@dataclass
class Browser:
    """A user's browser walking idp's hosted pages; it records what it was shown and sent."""

    issuer: str
    email: str
    http: requests.Session = field(default_factory=requests.Session)
    pages: list[str] = field(default_factory=list)  # paths of the HTML pages shown
    posts: list[str] = field(default_factory=list)  # paths of the forms sent

    def authorize(self, url: str, password: str = PASSWORD) -> str:
        """Follow idp from the authorization URL, signing in and allowing when asked; return
        the URL of the redirect that leaves idp (not followed: it is the app's)."""
        response = self.http.get(url, allow_redirects=False, timeout=REQUEST_TIMEOUT)
        for _ in range(10):
            if response.status_code in (302, 303):
                location = urljoin(response.url, response.headers["Location"])
                if not location.startswith(f"{self.issuer}/"):
                    return location
                response = self.http.get(location, allow_redirects=False, timeout=REQUEST_TIMEOUT)
                continue
            assert response.status_code == 200, (response.status_code, response.text)
            path = urlsplit(response.url).path
            self.pages.append(path)
            if path == "/signin":
                response = self.submit(response, {"email": self.email, "password": password})
            elif path == "/consent":
                response = self.submit(response, {"approve": "Allow"})
            else:
                raise AssertionError(f"unexpected page {response.url}:\n{response.text}")
        raise AssertionError("more than 10 steps inside idp")

    def submit(self, page: requests.Response, values: dict[str, str]) -> requests.Response:
        """Send the page's form with its hidden fields (CSRF token, interaction) and `values`,
        with the Origin header a browser adds."""
        form = FormReader()
        form.feed(page.text)
        assert form.action and "csrf_token" in form.hidden, page.text
        action = urljoin(page.url, form.action)
        self.posts.append(urlsplit(action).path)
        return self.http.post(
            action,
            data={**form.hidden, **values},
            headers={"Origin": self.issuer},
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        )


class FormReader(HTMLParser):
    """The first form's action and its hidden inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.hidden: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = attributes.get("action") or ""
        elif tag == "input" and attributes.get("type") == "hidden" and attributes.get("name"):
            self.hidden[attributes["name"] or ""] = attributes.get("value") or ""


# -- the app's side ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def discovery(server: Gunicorn) -> dict[str, Any]:
    response = requests.get(
        f"{server.url}/.well-known/openid-configuration", timeout=REQUEST_TIMEOUT
    )
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["issuer"] == server.url
    return document


@pytest.fixture
def register(
    server: Gunicorn, new_oidc_client: Callable[..., dict[str, str]]
) -> Callable[..., Registered]:
    def create(kind: str, scope: str = ALL_SCOPES, first_party: bool = False) -> Registered:
        # Nothing listens there: the test hands the redirect to the app's code itself.
        redirect_uri = f"http://127.0.0.1:{free_port()}/cb"
        options = [f"--{kind}", "--redirect-uri", redirect_uri, "--scope", scope]
        created = new_oidc_client(
            server, f"Acme {kind}", *options, *(["--first-party"] if first_party else [])
        )
        assert ("client_secret" in created) == (kind == "confidential"), created
        return Registered(created["client_id"], created.get("client_secret"), redirect_uri, scope)

    return create


def start_authorization(oauth: OAuth2Session, discovery: dict[str, Any]) -> Authorization:
    code_verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = oauth.create_authorization_url(
        discovery["authorization_endpoint"], code_verifier=code_verifier, nonce=nonce
    )
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["code_challenge_method"] == "S256", url
    return Authorization(url, state, nonce, code_verifier)


def finish_authorization(
    oauth: OAuth2Session, discovery: dict[str, Any], started: Authorization, callback: str
) -> dict[str, Any]:
    """What the app's /callback does: check iss (RFC 9207), then let Authlib check the state
    and redeem the code with the PKCE verifier."""
    redirect_uri = oauth.redirect_uri
    assert callback.startswith(f"{redirect_uri}?"), callback
    answer = dict(parse_qsl(urlsplit(callback).query))
    assert "error" not in answer, answer
    assert answer["iss"] == discovery["issuer"]
    assert answer["state"] == started.state
    return oauth.fetch_token(
        discovery["token_endpoint"],
        authorization_response=callback,
        state=started.state,
        code_verifier=started.code_verifier,
    )


def at_hash(access_token: str) -> str:
    """OIDC Core 3.1.3.6: base64url of the left half of SHA-256 of the token, unpadded."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def verified_id_token(
    discovery: dict[str, Any], token: dict[str, Any], client_id: str, nonce: str
) -> dict[str, Any]:
    """What the app does with the ID token: the JWKS key by kid, then every check."""
    keys = jwt.PyJWKClient(discovery["jwks_uri"], cache_jwk_set=False)
    key = keys.get_signing_key_from_jwt(token["id_token"])
    claims = jwt.decode(
        token["id_token"],
        key.key,
        algorithms=discovery["id_token_signing_alg_values_supported"],
        audience=client_id,
        issuer=discovery["issuer"],
        options={"require": ID_TOKEN_CLAIMS},
    )
    assert claims["nonce"] == nonce
    assert claims["at_hash"] == at_hash(token["access_token"])
    assert claims["sid"]
    assert claims["azp"] == client_id
    return claims


def userinfo(oauth: OAuth2Session, discovery: dict[str, Any]) -> requests.Response:
    return oauth.get(discovery["userinfo_endpoint"])


# -- the journeys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["public", "confidential"])
def test_sign_in_id_token_userinfo_and_refresh(
    kind, server, discovery, register, new_verified_user
):
    email, user_id = new_verified_user(server)
    app = register(kind)
    oauth = app.session(discovery)
    started = start_authorization(oauth, discovery)

    browser = Browser(server.url, email)
    callback = browser.authorize(started.url)
    assert browser.pages == ["/signin", "/consent"]
    token = finish_authorization(oauth, discovery, started, callback)
    assert token["token_type"].lower() == "bearer"
    assert set(token["scope"].split()) == set(ALL_SCOPES.split())
    assert token["refresh_token"]

    claims = verified_id_token(discovery, token, app.client_id, started.nonce)
    assert claims["sub"] == user_id
    assert claims["email"] == email

    # userinfo: every claim the scopes cover.
    info = userinfo(oauth, discovery)
    assert info.status_code == 200, info.text
    assert info.json() == {
        "sub": user_id,
        "email": email,
        "email_verified": True,
        "name": "Ada Lovelace",
        "given_name": "Ada",
        "family_name": "Lovelace",
    }

    # Refresh (offline_access): a new pair; the spent refresh token is refused.
    refreshed = oauth.refresh_token(discovery["token_endpoint"])
    assert refreshed["access_token"] != token["access_token"]
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert set(refreshed["scope"].split()) == set(ALL_SCOPES.split())
    after_refresh = userinfo(oauth, discovery)
    assert after_refresh.status_code == 200, after_refresh.text
    assert after_refresh.json()["sub"] == user_id

    # Replaying the spent one is taken for theft (RFC 9700 4.14): the whole family ends.
    with pytest.raises(OAuthError) as replayed:
        oauth.refresh_token(discovery["token_endpoint"], refresh_token=token["refresh_token"])
    assert replayed.value.error == "invalid_grant"
    with pytest.raises(OAuthError) as revoked:
        oauth.refresh_token(discovery["token_endpoint"], refresh_token=refreshed["refresh_token"])
    assert revoked.value.error == "invalid_grant"
    assert userinfo(oauth, discovery).status_code == 401


def test_userinfo_shows_only_what_the_scopes_cover(server, discovery, register, new_verified_user):
    email, user_id = new_verified_user(server)
    app = register("public", scope="openid email")
    oauth = app.session(discovery)
    started = start_authorization(oauth, discovery)
    token = finish_authorization(
        oauth, discovery, started, Browser(server.url, email).authorize(started.url)
    )
    assert "refresh_token" not in token  # no offline_access asked for, none given

    claims = verified_id_token(discovery, token, app.client_id, started.nonce)
    assert claims["sub"] == user_id
    assert "name" not in claims
    info = userinfo(oauth, discovery)
    assert info.status_code == 200, info.text
    assert info.json() == {"sub": user_id, "email": email, "email_verified": True}


def test_a_second_app_signs_in_without_the_password(server, discovery, register, new_verified_user):
    email, user_id = new_verified_user(server)
    browser = Browser(server.url, email)
    first = register("confidential")
    first_oauth = first.session(discovery)
    started = start_authorization(first_oauth, discovery)
    first_token = finish_authorization(
        first_oauth, discovery, started, browser.authorize(started.url)
    )
    first_claims = verified_id_token(discovery, first_token, first.client_id, started.nonce)
    assert browser.posts == ["/signin", "/consent"]

    # Another app: the browser session answers for the user; only consent is asked.
    second = register("public")
    second_oauth = second.session(discovery)
    started = start_authorization(second_oauth, discovery)
    second_token = finish_authorization(
        second_oauth, discovery, started, browser.authorize(started.url)
    )
    second_claims = verified_id_token(discovery, second_token, second.client_id, started.nonce)
    assert browser.posts == ["/signin", "/consent", "/consent"]
    assert second_claims["sub"] == first_claims["sub"] == user_id
    assert second_claims["sid"] == first_claims["sid"]
    assert second_claims["auth_time"] == first_claims["auth_time"]

    # A first-party app is not even asked about: one redirect and the code is there.
    own = register("public", first_party=True)
    own_oauth = own.session(discovery)
    started = start_authorization(own_oauth, discovery)
    answer = browser.http.get(started.url, allow_redirects=False, timeout=REQUEST_TIMEOUT)
    assert answer.status_code in (302, 303), answer.text
    own_token = finish_authorization(own_oauth, discovery, started, answer.headers["Location"])
    own_claims = verified_id_token(discovery, own_token, own.client_id, started.nonce)
    assert own_claims["sid"] == first_claims["sid"]
    assert browser.posts == ["/signin", "/consent", "/consent"]
