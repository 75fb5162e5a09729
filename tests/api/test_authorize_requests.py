"""What /oauth/authorize makes of request objects, ID token hints and requests it cannot answer.

From the relying app's side: `request` and `request_uri` are refused as OIDC Core 6 requires, and
an `id_token_hint` is honoured (the user it names, or a new sign-in). From an attacker's: a hint
that is not ours is refused, and idp's own error page says only idp's words.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import zlib
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt as jose_jwt

from idp.clock import utcnow
from idp.services.keys import ALGORITHM
from idp.services.registry import get_services
from tests.flows import register_and_verify, unique_email
from tests.oidc_flows import (
    ISSUER,
    REDIRECT_URI,
    App,
    authorize_params,
    code_through_browser,
    follow_to_app,
    id_token_claims,
    pkce,
    query_of,
    redeem,
    register_app,
    start,
)

REQUEST_OBJECT = "eyJhbGciOiJub25lIn0.eyJzY29wZSI6Im9wZW5pZCJ9."
SPOOF = "SECURITY NOTICE: your account is locked, call +1-555-0100"


@pytest.fixture
def relying(app: Flask) -> App:
    """A first-party public app: no consent page between the user and a code."""
    return register_app(app, public=True, first_party=True)


def account(client: FlaskClient, mailbox: Any) -> tuple[str, str]:
    """A verified account: its email and its `sub`."""
    email = unique_email("hint")
    return email, register_and_verify(client, mailbox, email)


def id_token_for(client: FlaskClient, browser: FlaskClient, relying: App, email: str) -> str:
    """Sign `email` in on `browser` and return the ID token the app gets."""
    verifier, challenge = pkce()
    code, _ = code_through_browser(browser, relying, email, challenge)
    response = redeem(client, relying, code, verifier)
    assert response.status_code == 200, response.json
    return response.json["id_token"]


def signed_here(app: Flask, claims: dict[str, Any]) -> str:
    """A JWT signed with idp's own active key (what only idp can make)."""
    with app.app_context():
        kid, key = get_services().keys.signing_key()
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": kid}
        return jose_jwt.encode(header, claims, key, algorithms=[ALGORITHM])


def error_answer(response: Any) -> dict[str, str]:
    """The query of a redirect to the app's registered redirect URI."""
    assert response.status_code in (302, 303), (response.status_code, response.text)
    location = response.headers["Location"]
    assert location.startswith(f"{REDIRECT_URI}?"), location
    return query_of(location)


def interaction_params(location: str) -> dict[str, str]:
    """The request an interaction token carries (signed, not encrypted: anyone can read it)."""
    token = query_of(location)["interaction"]
    payload = token.rsplit(".", 2)[0]
    compressed = payload.startswith(".")
    raw = base64.urlsafe_b64decode(payload.lstrip(".") + "=" * (-len(payload.lstrip(".")) % 4))
    return json.loads(zlib.decompress(raw) if compressed else raw)["p"]


def page_text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


# request, request_uri ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("request", REQUEST_OBJECT, "request_not_supported"),
        ("request_uri", "https://app.example/request.jwt", "request_uri_not_supported"),
        ("request_uri", "urn:ietf:params:oauth:request_uri:abc", "request_uri_not_supported"),
    ],
    ids=["request", "request_uri", "par-urn"],
)
@pytest.mark.parametrize("signed_in", [False, True], ids=["no-session", "session"])
def test_a_request_object_is_refused_to_the_app(
    client, browser, app, mailbox, relying, name, value, error, signed_in
):
    if signed_in:
        code_through_browser(browser, relying, account(client, mailbox)[0], pkce()[1])
    params = authorize_params(relying, pkce()[1], **{name: value})
    query = error_answer(start(browser, params))
    assert query["error"] == error
    assert query["state"] == params["state"]
    assert query["iss"] == ISSUER
    assert "code" not in query


def test_a_request_object_is_refused_when_posted(browser, relying):
    params = authorize_params(relying, pkce()[1], request=REQUEST_OBJECT)
    answer = follow_to_app(browser, browser.post("/oauth/authorize", data=params), "nobody")
    query = error_answer(answer)
    assert query["error"] == "request_not_supported"
    assert query["state"] == params["state"]


def test_a_request_object_is_named_before_what_it_may_carry(browser, relying):
    # An app that puts its PKCE challenge and scope in the request object hears why it failed,
    # not that the challenge is missing.
    params = authorize_params(relying, None, request=REQUEST_OBJECT)
    del params["scope"]
    query = error_answer(start(browser, params))
    assert query["error"] == "request_not_supported"
    assert query["iss"] == ISSUER


def test_both_request_and_request_uri_are_refused(browser, relying):
    params = authorize_params(
        relying, pkce()[1], request=REQUEST_OBJECT, request_uri="https://app.example/r"
    )
    query = error_answer(start(browser, params))
    assert query["error"] in ("request_not_supported", "request_uri_not_supported")
    assert "code" not in query


@pytest.mark.parametrize(
    "change",
    [{"redirect_uri": "https://evil.example/callback"}, {"client_id": "nobody"}],
    ids=["redirect_uri", "client_id"],
)
def test_a_request_object_with_a_bad_client_gets_idps_page(browser, relying, change):
    params = authorize_params(relying, pkce()[1], request=REQUEST_OBJECT, **change)
    response = start(browser, params)
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_an_empty_request_parameter_is_no_request_object(client, browser, app, mailbox, relying):
    email, _ = account(client, mailbox)
    code_through_browser(browser, relying, email, pkce()[1])
    params = authorize_params(relying, pkce()[1], request="", request_uri="")
    assert "code" in query_of(start(browser, params).headers["Location"])


def test_discovery_still_says_request_objects_are_not_supported(client):
    document = client.get("/.well-known/openid-configuration").json
    assert document["request_parameter_supported"] is False
    assert document["request_uri_parameter_supported"] is False


# id_token_hint -------------------------------------------------------------------------------


@pytest.fixture
def two_users(client, app, mailbox, relying) -> dict[str, Any]:
    """Alice signed in on `alice_browser`, and an ID token of Bob's from another browser."""
    alice, bob = account(client, mailbox), account(client, mailbox)
    alice_browser = app.test_client()
    alice_token = id_token_for(client, alice_browser, relying, alice[0])
    bob_token = id_token_for(client, app.test_client(), relying, bob[0])
    return {
        "alice": alice,
        "bob": bob,
        "alice_browser": alice_browser,
        "alice_token": alice_token,
        "bob_token": bob_token,
    }


def test_a_hint_for_someone_else_with_prompt_none_is_login_required(relying, two_users):
    params = authorize_params(
        relying, pkce()[1], prompt="none", id_token_hint=two_users["bob_token"]
    )
    query = error_answer(start(two_users["alice_browser"], params))
    assert query["error"] == "login_required"
    assert query["state"] == params["state"]
    assert query["iss"] == ISSUER
    assert "code" not in query


def test_a_hint_for_someone_else_asks_to_sign_in_as_them(client, relying, two_users):
    browser = two_users["alice_browser"]
    verifier, challenge = pkce()
    params = authorize_params(relying, challenge, id_token_hint=two_users["bob_token"])
    response = start(browser, params)
    assert response.status_code == 303
    location = response.headers["Location"]
    assert urlsplit(location).path == "/signin"
    # The ID token is checked once and not carried to the pages (or into anyone's URL log).
    assert two_users["bob_token"] not in location
    assert "id_token_hint" not in interaction_params(location)
    # Bob signs in: the app gets a code for the user it expected.
    answer = follow_to_app(browser, response, two_users["bob"][0])
    query = query_of(answer.headers["Location"])
    assert query["state"] == params["state"]
    tokens = redeem(client, relying, query["code"], verifier).json
    claims = id_token_claims(client, tokens["id_token"], relying.client_id)
    assert claims["sub"] == two_users["bob"][1]


def test_a_hint_for_the_signed_in_user_gives_a_code(client, relying, two_users):
    verifier, challenge = pkce()
    for prompt in ({"prompt": "none"}, {}):
        params = authorize_params(
            relying, challenge, id_token_hint=two_users["alice_token"], **prompt
        )
        query = error_answer(start(two_users["alice_browser"], params))
        assert "code" in query, query
        assert query["state"] == params["state"]
    tokens = redeem(client, relying, query["code"], verifier).json
    claims = id_token_claims(client, tokens["id_token"], relying.client_id)
    assert claims["sub"] == two_users["alice"][1]


def test_an_expired_hint_is_still_a_hint(app, client, relying, two_users):
    # OIDC Core 3.1.2.1: a hint names the user; it need not be fresh (logout reads it alike).
    claims = id_token_claims(client, two_users["alice_token"], relying.client_id)
    past = int((utcnow() - timedelta(days=2)).timestamp())
    expired = signed_here(app, {**claims, "iat": past - 300, "exp": past})
    for hint, expected in ((expired, "code"), (two_users["bob_token"], "error")):
        params = authorize_params(relying, pkce()[1], prompt="none", id_token_hint=hint)
        assert expected in error_answer(start(two_users["alice_browser"], params))


@pytest.mark.parametrize("prompt", ["none", None], ids=["prompt-none", "no-prompt"])
def test_a_hint_without_a_session_behaves_as_before(app, relying, two_users, prompt):
    browser = app.test_client()
    params = authorize_params(
        relying, pkce()[1], prompt=prompt, id_token_hint=two_users["bob_token"]
    )
    response = start(browser, params)
    if prompt == "none":
        assert error_answer(response)["error"] == "login_required"
    else:
        assert urlsplit(response.headers["Location"]).path == "/signin"


def _tampered_sub(token: str, sub: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = sub
    encoded = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{encoded}.{signature}"


def _own_key(claims: dict[str, Any], kid: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


@pytest.mark.parametrize(
    "forge",
    [
        "tampered-sub",
        "attackers-key",
        "foreign-issuer",
        "another-client",
        "no-sub",
        "alg-none",
        "garbage",
        "too-long",
    ],
)
def test_a_hint_that_is_not_ours_is_refused(app, client, relying, two_users, forge):
    # Bob's own hint swapped for Alice's `sub` would get a code for Alice without the hint
    # check; every variant must get invalid_request and no code, with or without prompt=none.
    alice_sub = two_users["alice"][1]
    claims = id_token_claims(client, two_users["bob_token"], relying.client_id)
    kid = jwt.get_unverified_header(two_users["bob_token"])["kid"]
    other = register_app(app, public=True, first_party=True, name="Other")
    hint = {
        "tampered-sub": lambda: _tampered_sub(two_users["bob_token"], alice_sub),
        "attackers-key": lambda: _own_key({**claims, "sub": alice_sub}, kid),
        "foreign-issuer": lambda: signed_here(
            app, {**claims, "sub": alice_sub, "iss": "https://evil.example"}
        ),
        "another-client": lambda: signed_here(
            app, {**claims, "sub": alice_sub, "aud": other.client_id}
        ),
        "no-sub": lambda: signed_here(app, {k: v for k, v in claims.items() if k != "sub"}),
        "alg-none": lambda: jwt.encode({**claims, "sub": alice_sub}, None, algorithm="none"),
        "garbage": lambda: "not-a-token",
        "too-long": lambda: "x" * 9000,
    }[forge]()
    for prompt in ("none", None):
        params = authorize_params(relying, pkce()[1], prompt=prompt, id_token_hint=hint)
        response = start(two_users["alice_browser"], params)
        if forge == "too-long":
            # Longer than any ID token of ours: refused before the client is even looked at.
            assert response.status_code == 400
            assert "Location" not in response.headers
            continue
        query = error_answer(response)
        assert query["error"] == "invalid_request", query
        assert query["state"] == params["state"]
        assert query["iss"] == ISSUER
        assert "code" not in query
        assert hint not in query.get("error_description", "")


def test_an_access_token_is_no_id_token_hint(client, relying, two_users):
    verifier, challenge = pkce()
    browser = two_users["alice_browser"]
    code, _ = code_through_browser(browser, relying, two_users["alice"][0], challenge)
    access = redeem(client, relying, code, verifier).json["access_token"]
    params = authorize_params(relying, pkce()[1], prompt="none", id_token_hint=access)
    assert error_answer(start(browser, params))["error"] == "invalid_request"


def test_the_hint_is_not_logged(relying, two_users, caplog, audit_output):
    caplog.set_level(logging.DEBUG)
    browser = two_users["alice_browser"]
    bob_token = two_users["bob_token"]
    broken = bob_token[:-8] + "AAAAAAAA"
    for hint, prompt in ((bob_token, "none"), (broken, "none"), (bob_token, None)):
        params = authorize_params(relying, pkce()[1], prompt=prompt, id_token_hint=hint)
        response = start(browser, params)
    follow_to_app(browser, response, two_users["bob"][0])
    assert caplog.records  # the sign-in was audited at least
    for part in bob_token.split(".")[1:]:
        assert part[:40] not in caplog.text
        assert part[:40] not in audit_output.getvalue()


# idp's own error page ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"redirect_uri": f"https://evil.example/{SPOOF}"},
            "The application's return address is not registered.",
        ),
        (
            {"redirect_uri": f"https://evil.example/{SPOOF}", "response_type": SPOOF},
            "The application asked for a kind of response idp does not give.",
        ),
        ({"client_id": SPOOF}, "This application is not known to idp."),
        ({"client_id": SPOOF, "response_type": SPOOF}, "does not give."),
        ({"redirect_uri": None}, "The application did not say where to return you."),
        ({"client_id": None}, "The request does not say which application it comes from."),
    ],
    ids=[
        "redirect_uri",
        "response_type",
        "client_id",
        "client-and-response-type",
        "no-redirect_uri",
        "no-client_id",
    ],
)
def test_idps_error_page_says_only_idps_words(browser, relying, change, message):
    params = authorize_params(relying, pkce()[1], **change)
    response = start(browser, params)
    assert response.status_code == 400
    assert "Location" not in response.headers
    text = page_text(response)
    assert message in text
    assert "SECURITY NOTICE" not in text
    assert "555-0100" not in text
    assert "evil.example" not in text
    assert "Error 400" in text


def test_the_error_page_names_the_product(make_app):
    app = make_app(IDP_PRODUCT_NAME="Acme Account")
    relying = register_app(app, public=True)
    params = authorize_params(relying, pkce()[1], redirect_uri=f"https://evil.example/{SPOOF}")
    text = page_text(app.test_client().get(f"/oauth/authorize?{urlencode(params)}"))
    assert "The application's return address is not registered." in text
    assert "SECURITY NOTICE" not in text
    params = authorize_params(relying, pkce()[1], client_id="nobody")
    text = page_text(app.test_client().get(f"/oauth/authorize?{urlencode(params)}"))
    assert "This application is not known to Acme Account." in text


def test_a_valid_app_still_hears_the_description(browser, relying):
    # The redirect URI is the app's own: Authlib's description helps its developers there.
    params = authorize_params(relying, pkce()[1], response_mode="fragment")
    query = error_answer(start(browser, params))
    assert query["error"] == "invalid_request"
    assert query["error_description"]


@pytest.mark.parametrize("name", ["redirect_uri", "response_type", "scope"])
@pytest.mark.parametrize("character", ['"', "\\"])
def test_a_quote_or_backslash_where_no_uri_or_token_has_one_gets_idps_page(
    browser, relying, name, character
):
    """Authlib quotes these in its error's description, which may not hold either character:
    it raised, and the answer was a 500. They are malformed: idp's page, nothing sent."""
    params = authorize_params(relying, pkce()[1])
    params[name] = f"{params[name]}{character}x"
    response = start(browser, params)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert f"The parameter {name} is too long or malformed." in page_text(response)
