"""A native app's loopback redirect URI on whatever port it was given (RFC 8252 7.3).

The app registers `http://127.0.0.1/callback` (or `http://[::1]/...`) and asks with the port
the operating system gave it: that port, and nothing else, may differ from the registration.
Every other part, every other kind of redirect URI and every post-logout URI stay exact. The
code is bound to the URI the request named, port included.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from idp.clock import utcnow
from idp.oauth.clients import loopback_redirect_matches
from idp.services import clients as client_service
from idp.transaction import commit
from tests.flows import register_and_verify, unique_email
from tests.oidc_flows import (
    App,
    authorize_params,
    code_through_browser,
    follow_to_app,
    pkce,
    query_of,
    redeem,
    register_app,
    start,
)

IPV4 = "http://127.0.0.1/callback"
IPV6 = "http://[::1]/callback"


@pytest.fixture
def user(client: FlaskClient, mailbox: Any) -> str:
    """A verified account's email."""
    email = unique_email("loopback")
    register_and_verify(client, mailbox, email)
    return email


def asking_with(relying: App, redirect_uri: str) -> App:
    """The same app naming another redirect URI in its requests."""
    return App(relying.client_id, relying.client_secret, redirect_uri, relying.public)


def assert_idps_page(response: Any) -> None:
    assert response.status_code == 400, response.headers
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"


# The matching itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("registered", "requested"),
    [
        (IPV4, "http://127.0.0.1:53124/callback"),
        (IPV4, "http://127.0.0.1:1/callback"),
        (IPV4, "http://127.0.0.1:65535/callback"),
        (IPV4, IPV4),
        (IPV6, "http://[::1]:53124/callback"),
        ("http://127.0.0.1:8080/callback", "http://127.0.0.1:53124/callback"),
        ("http://127.0.0.1:8080/callback", IPV4),
        ("http://127.0.0.1", "http://127.0.0.1:53124"),
        ("http://127.0.0.1/", "http://127.0.0.1:53124/"),
        ("http://127.0.0.1/cb?app=notes", "http://127.0.0.1:53124/cb?app=notes"),
        ("http://127.0.0.1?app=notes", "http://127.0.0.1:53124?app=notes"),
        ("http://127.0.0.1/a%20b", "http://127.0.0.1:53124/a%20b"),
    ],
)
def test_a_loopback_uri_matches_on_any_port(registered, requested):
    assert loopback_redirect_matches(registered, requested)


PORTLESS_MISMATCHES = [
    # The rest of the URI, compared as a string.
    (IPV4, "http://127.0.0.1:53124/callback/"),
    (IPV4, "http://127.0.0.1:53124/callbackx"),
    (IPV4, "http://127.0.0.1:53124/Callback"),
    (IPV4, "http://127.0.0.1:53124/%63allback"),
    (IPV4, "http://127.0.0.1:53124/callback/../callback"),
    (IPV4, "http://127.0.0.1:53124/callback?"),
    (IPV4, "http://127.0.0.1:53124/callback?x=1"),
    (IPV4, "http://127.0.0.1:53124/callback#"),
    (IPV4, "http://127.0.0.1:53124/callback#frag"),
    (IPV4, "http://127.0.0.1:53124"),
    (IPV4, "http://127.0.0.1:53124/"),
    ("http://127.0.0.1/", "http://127.0.0.1:53124"),
    ("http://127.0.0.1/cb?app=notes", "http://127.0.0.1:53124/cb?app=Notes"),
    ("http://127.0.0.1/cb?app=notes", "http://127.0.0.1:53124/cb?app=notes&x=1"),
    ("http://127.0.0.1/cb?app=notes", "http://127.0.0.1:53124/cb?app%3Dnotes"),
    # The scheme.
    (IPV4, "HTTP://127.0.0.1:53124/callback"),
    (IPV4, "https://127.0.0.1:53124/callback"),
    (IPV4, "//127.0.0.1:53124/callback"),
    (IPV4, " http://127.0.0.1:53124/callback"),
    (IPV4, "http:/127.0.0.1:53124/callback"),
    # The host: the same IP literal, spelled the same way.
    (IPV4, "http://127.0.0.1.evil.example:53124/callback"),
    (IPV4, "http://127.0.0.1.evil.example/callback"),
    (IPV4, "http://127.0.0.1@evil.example/callback"),
    (IPV4, "http://127.0.0.1:53124@evil.example/callback"),
    (IPV4, "http://evil.example@127.0.0.1:53124/callback"),
    (IPV4, "http://127.0.0.1:53124\\@evil.example/callback"),
    (IPV4, "http://127.0.0.1:53124\\callback"),
    (IPV4, "http://127.0.0.1%3A53124/callback"),
    (IPV4, "http://127.0.0.%31:53124/callback"),
    (IPV4, "http%3A%2F%2F127.0.0.1%3A53124%2Fcallback"),
    (IPV4, "http://[::ffff:127.0.0.1]:53124/callback"),
    (IPV4, "http://[::1]:53124/callback"),
    (IPV4, "http://localhost:53124/callback"),
    (IPV4, "http://127.1:53124/callback"),
    (IPV4, "http://2130706433:53124/callback"),
    (IPV4, "http://0x7f.0.0.1:53124/callback"),
    (IPV4, "http://127.0.0.2:53124/callback"),
    (IPV6, "http://[::ffff:127.0.0.1]:53124/callback"),
    (IPV6, "http://[0:0:0:0:0:0:0:1]:53124/callback"),
    (IPV6, "http://[::1%25lo]:53124/callback"),
    (IPV6, "http://127.0.0.1:53124/callback"),
    (IPV6, "http://::1:53124/callback"),
    # The port: a decimal number from 1 to 65535, written plainly.
    (IPV4, "http://127.0.0.1:0/callback"),
    (IPV4, "http://127.0.0.1:65536/callback"),
    (IPV4, "http://127.0.0.1:99999/callback"),
    (IPV4, "http://127.0.0.1:123456/callback"),
    (IPV4, "http://127.0.0.1:-1/callback"),
    (IPV4, "http://127.0.0.1:+80/callback"),
    (IPV4, "http://127.0.0.1: 80/callback"),
    (IPV4, "http://127.0.0.1:0x50/callback"),
    (IPV4, "http://127.0.0.1:abc/callback"),
    (IPV4, "http://127.0.0.1:/callback"),
    (IPV4, "http://127.0.0.1:053124/callback"),
    (IPV4, "http://127.0.0.1:80:80/callback"),
    (IPV4, "http://127.0.0.1:\u0665\u0663/callback"),
]


@pytest.mark.parametrize(("registered", "requested"), PORTLESS_MISMATCHES)
def test_only_the_port_of_a_loopback_uri_may_differ(registered, requested):
    assert not loopback_redirect_matches(registered, requested)


@pytest.mark.parametrize(
    ("registered", "requested"),
    [
        ("http://localhost/callback", "http://localhost:53124/callback"),
        ("http://localhost:8080/callback", "http://localhost:53124/callback"),
        ("https://127.0.0.1/callback", "https://127.0.0.1:53124/callback"),
        ("https://[::1]/callback", "https://[::1]:53124/callback"),
        ("https://app.example/callback", "https://app.example:8443/callback"),
        ("http://app.example/callback", "http://app.example:8080/callback"),
        ("http://127.0.0.2/callback", "http://127.0.0.2:53124/callback"),
        ("http://[0:0:0:0:0:0:0:1]/callback", "http://[0:0:0:0:0:0:0:1]:53124/callback"),
        ("com.example.notes:/callback", "com.example.notes:53124/callback"),
        ("http://127.0.0.1#frag", "http://127.0.0.1:53124#frag"),
        ("http://127.0.0.1:99999/callback", "http://127.0.0.1:53124/callback"),
    ],
)
def test_other_redirect_uris_never_match_on_another_port(registered, requested):
    assert not loopback_redirect_matches(registered, requested)


@pytest.mark.parametrize("odd", [None, b"http://127.0.0.1:53124/callback", 53124, ["x"]])
def test_what_is_not_a_string_matches_nothing(odd):
    assert not loopback_redirect_matches(IPV4, odd)
    assert not loopback_redirect_matches(odd, IPV4)


# Through the authorization endpoint ----------------------------------------------------------


@pytest.mark.parametrize(
    ("registered", "requested"),
    [
        (IPV4, "http://127.0.0.1:53124/callback"),
        (IPV6, "http://[::1]:53124/callback"),
        ("http://127.0.0.1:8080/callback", "http://127.0.0.1:61000/callback"),
        ("http://127.0.0.1/callback?app=notes", "http://127.0.0.1:53124/callback?app=notes"),
    ],
)
def test_a_native_app_signs_in_on_an_ephemeral_port(
    client, browser, app, user, registered, requested
):
    relying = asking_with(register_app(app, public=True, redirect_uri=registered), requested)
    verifier, challenge = pkce()
    params = authorize_params(relying, challenge)
    answer = follow_to_app(browser, start(browser, params), user)
    location = answer.headers["Location"]
    separator = "&" if "?" in requested else "?"
    assert location.startswith(f"{requested}{separator}"), location
    query = query_of(location)
    assert query["state"] == params["state"]
    response = redeem(client, relying, query["code"], verifier)
    assert response.status_code == 200, response.json
    assert response.json["id_token"]


@pytest.mark.parametrize(
    "redeemed_with",
    [
        "http://127.0.0.1:53125/callback",
        IPV4,
        "http://127.0.0.1:8080/callback",
        "http://[::1]:53124/callback",
        "http://localhost:53124/callback",
        None,
    ],
    ids=["another-port", "registered", "registered-port", "ipv6", "localhost", "missing"],
)
def test_the_code_redeems_only_with_the_port_it_was_issued_for(
    client, browser, app, user, redeemed_with
):
    # RFC 6749 4.1.3: the token request repeats the authorization request's redirect_uri,
    # compared with what the code was issued for, not with what the client registered.
    relying = register_app(app, public=True, redirect_uri="http://127.0.0.1:8080/callback")
    verifier, challenge = pkce()
    code, _ = code_through_browser(
        browser, asking_with(relying, "http://127.0.0.1:53124/callback"), user, challenge
    )
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
    data["client_id"] = relying.client_id
    if redeemed_with is not None:
        data["redirect_uri"] = redeemed_with
    response = client.post("/oauth/token", data=data)
    assert response.status_code == 400
    assert response.json["error"] in ("invalid_grant", "invalid_request")
    assert "access_token" not in response.json


@pytest.mark.parametrize(
    ("registered", "requested"),
    PORTLESS_MISMATCHES,
)
def test_a_look_alike_loopback_uri_gets_idps_page(browser, app, user, registered, requested):
    relying = register_app(app, public=True, redirect_uri=registered)
    _, challenge = pkce()
    params = authorize_params(asking_with(relying, requested), challenge)
    # Without a session, and with one: neither the sign-in nor a code may lead there.
    assert_idps_page(start(browser, params))
    code_through_browser(browser, relying, user, challenge)
    assert_idps_page(start(browser, params))


@pytest.mark.parametrize("requested", [uri for _, uri in PORTLESS_MISMATCHES if "\\" in uri])
def test_a_loopback_uri_with_a_backslash_leads_nowhere(browser, app, requested):
    relying = register_app(app, public=True, redirect_uri=IPV4)
    response = start(browser, authorize_params(asking_with(relying, requested), pkce()[1]))
    assert response.status_code >= 400
    assert "Location" not in response.headers


def test_localhost_is_matched_exactly(client, browser, app, user):
    # RFC 8252 8.3: the name may resolve elsewhere than loopback, so it gets no port leeway.
    relying = register_app(app, public=True, redirect_uri="http://localhost:8080/callback")
    verifier, challenge = pkce()
    code, _ = code_through_browser(browser, relying, user, challenge)
    assert redeem(client, relying, code, verifier).status_code == 200
    for other in ("http://localhost:53124/callback", "http://localhost/callback"):
        params = authorize_params(asking_with(relying, other), challenge)
        assert_idps_page(start(browser, params))


@pytest.mark.parametrize(
    ("registered", "requested"),
    [
        ("https://127.0.0.1/callback", "https://127.0.0.1:53124/callback"),
        ("https://app.example/callback", "https://app.example:8443/callback"),
        ("http://app.test/callback", "http://app.test:8080/callback"),
        ("http://127.0.0.2/callback", "http://127.0.0.2:53124/callback"),
        ("http://[0:0:0:0:0:0:0:1]/callback", "http://[0:0:0:0:0:0:0:1]:53124/callback"),
    ],
)
def test_other_redirect_uris_stay_exact(browser, app, user, registered, requested):
    with app.app_context():
        created = client_service.create_client(
            "Notes",
            "openid profile email",
            utcnow(),
            kind=client_service.PUBLIC,
            redirect_uris=[registered],
            allow_http_redirects=True,
        )
        commit()
    relying = App(created.client.client_id, "", registered, public=True)
    _, challenge = pkce()
    assert_idps_page(start(browser, authorize_params(asking_with(relying, requested), challenge)))
    code_through_browser(browser, relying, user, challenge)


def test_a_post_logout_uri_on_loopback_stays_exact(browser, app):
    relying = register_app(
        app,
        public=True,
        redirect_uri=IPV4,
        post_logout_redirect_uri="http://127.0.0.1/signed-out",
    )
    response = browser.get(
        "/oauth/logout",
        query_string={
            "client_id": relying.client_id,
            "post_logout_redirect_uri": "http://127.0.0.1:53124/signed-out",
        },
    )
    assert_idps_page(response)
