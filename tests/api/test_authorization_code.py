"""The authorization code flow from outside: a browser, a relying app and an attacker.

What a relying app gets (codes, tokens, ID tokens, userinfo), what it must be refused (a wrong
PKCE verifier, a replayed or expired code, an unregistered redirect URI), consent, single
sign-on and sign-out. The hosted pages' own defences are in test_hosted_pages.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient

from idp.clock import utcnow
from idp.errors import InvalidAuthorizationCode
from idp.services import clients as client_service
from idp.services.authorizations import AuthorizationService
from idp.services.registry import get_services
from idp.transaction import commit
from tests.flows import (
    API,
    login,
    register_and_verify,
    unique_email,
    verify_token,
)
from tests.oidc_flows import (
    ISSUER,
    LOGOUT_URI,
    REDIRECT_URI,
    App,
    authorize_params,
    bearer,
    code_through_browser,
    consent,
    csrf_token,
    follow_to_app,
    hidden,
    id_token_claims,
    pkce,
    query_of,
    redeem,
    register_app,
    sign_in,
    start,
    tampered,
)


@pytest.fixture
def user(client: FlaskClient, mailbox: Any) -> tuple[str, str]:
    """A verified account: its email and the API's user id."""
    email = unique_email("oidc")
    return email, register_and_verify(client, mailbox, email)


def tokens_for(
    client: FlaskClient, browser: FlaskClient, relying: App, email: str, **extra: str
) -> dict[str, Any]:
    verifier, challenge = pkce()
    code, _ = code_through_browser(browser, relying, email, challenge, **extra)
    response = redeem(client, relying, code, verifier)
    assert response.status_code == 200, response.json
    return response.json


def refresh(client: FlaskClient, relying: App, refresh_token: str) -> Any:
    auth = relying.token_auth()
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **auth.get("data", {})}
    return client.post("/oauth/token", data=data, headers=auth.get("headers", {}))


def leaves_idp(response: Any) -> bool:
    location = response.headers.get("Location", "")
    return not (location.startswith("/") or location.startswith(ISSUER))


# Happy paths ---------------------------------------------------------------------------------


def test_a_public_client_redeems_a_code_with_its_pkce_verifier(client, browser, app, user):
    relying = register_app(app, public=True)
    tokens = tokens_for(client, browser, relying, user[0])
    assert tokens["token_type"] == "Bearer"
    assert set(tokens["scope"].split()) == {"openid", "profile", "email"}
    assert "refresh_token" not in tokens
    userinfo = client.get("/oauth/userinfo", headers=bearer(tokens["access_token"]))
    assert userinfo.json["sub"] == user[1]


def test_the_token_response_is_never_cached(client, browser, app, user):
    relying = register_app(app, public=True)
    verifier, challenge = pkce()
    code, _ = code_through_browser(browser, relying, user[0], challenge)
    response = redeem(client, relying, code, verifier)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


@pytest.mark.parametrize("with_pkce", [True, False], ids=["pkce", "no-pkce"])
def test_a_confidential_client_redeems_a_code_with_http_basic(
    client, browser, app, user, with_pkce
):
    relying = register_app(app)
    verifier, challenge = pkce() if with_pkce else (None, None)
    code, _ = code_through_browser(browser, relying, user[0], challenge)
    response = redeem(client, relying, code, verifier)
    assert response.status_code == 200, response.json
    assert "id_token" in response.json
    userinfo = client.get("/oauth/userinfo", headers=bearer(response.json["access_token"]))
    assert userinfo.json["sub"] == user[1]


def test_a_confidential_client_with_a_wrong_secret_is_refused(client, browser, app, user):
    relying = register_app(app)
    verifier, challenge = pkce()
    code, _ = code_through_browser(browser, relying, user[0], challenge)
    forged = App(relying.client_id, "not-the-secret", relying.redirect_uri, public=False)
    response = redeem(client, forged, code, verifier)
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    # The code was not spent by the failed attempt: the real client still redeems it.
    assert redeem(client, relying, code, verifier).status_code == 200


def test_a_confidential_client_cannot_redeem_as_a_public_one(client, browser, app, user):
    relying = register_app(app)
    verifier, challenge = pkce()
    code, _ = code_through_browser(browser, relying, user[0], challenge)
    as_public = App(relying.client_id, "", relying.redirect_uri, public=True)
    response = redeem(client, as_public, code, verifier)
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"


def test_the_id_token_is_signed_and_says_who_when_and_for_whom(client, browser, app, user):
    email, user_id = user
    relying = register_app(app, public=True)
    before = int(utcnow().timestamp())
    tokens = tokens_for(client, browser, relying, email, nonce="n-0S6_WzA2Mj")
    claims = id_token_claims(client, tokens["id_token"], relying.client_id)
    assert claims["iss"] == ISSUER
    assert claims["sub"] == user_id
    assert claims["aud"] == relying.client_id
    assert claims["azp"] == relying.client_id
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert before - 1 <= claims["auth_time"] <= claims["iat"] < claims["exp"]
    digest = hashlib.sha256(tokens["access_token"].encode("ascii")).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
    assert isinstance(claims["sid"], str) and claims["sid"]
    # The access token speaks for the same user (at userinfo; the account API takes only its
    # own client's tokens).
    info = client.get("/oauth/userinfo", headers=bearer(tokens["access_token"]))
    assert info.status_code == 200, info.json
    assert info.json["sub"] == user_id


def test_the_longest_nonce_comes_back_whole(client, browser, app, user):
    relying = register_app(app, public=True)
    nonce = "n" * 255
    tokens = tokens_for(client, browser, relying, user[0], nonce=nonce)
    assert id_token_claims(client, tokens["id_token"], relying.client_id)["nonce"] == nonce


def test_an_id_token_is_not_accepted_as_an_access_token(client, browser, app, user):
    relying = register_app(app, public=True)
    tokens = tokens_for(client, browser, relying, user[0])
    assert client.get("/oauth/userinfo", headers=bearer(tokens["id_token"])).status_code == 401


@pytest.mark.parametrize(
    ("scope", "claims"),
    [
        ("openid", {"sub"}),
        ("openid email", {"sub", "email", "email_verified"}),
        ("openid profile", {"sub", "name", "given_name", "family_name"}),
        (
            "openid profile email",
            {"sub", "email", "email_verified", "name", "given_name", "family_name"},
        ),
    ],
)
def test_userinfo_shows_what_the_scope_allows(client, browser, app, user, scope, claims):
    email, user_id = user
    relying = register_app(app, public=True)
    tokens = tokens_for(client, browser, relying, email, scope=scope)
    for method in (client.get, client.post):
        response = method("/oauth/userinfo", headers=bearer(tokens["access_token"]))
        assert response.status_code == 200, response.json
        assert set(response.json) == claims
        assert response.json["sub"] == user_id
        assert response.headers["Cache-Control"] == "no-store"
    if "email" in claims:
        assert response.json["email"] == email
        assert response.json["email_verified"] is True


def test_userinfo_refuses_a_token_without_openid(client, user):
    api_token = login(client, user[0]).json["data"]["token"]
    response = client.get("/oauth/userinfo", headers=bearer(api_token))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert response.json["error"] == "insufficient_scope"


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, "Bearer"),
        ({"Authorization": "Bearer nope"}, 'Bearer error="invalid_token"'),
        ({"Authorization": "Basic bm9wZTpub3Bl"}, 'Bearer error="invalid_token"'),
        ({"Authorization": "Bearer "}, 'Bearer error="invalid_token"'),
    ],
    ids=["none", "garbage", "basic", "empty"],
)
def test_userinfo_refuses_a_bad_token(client, headers, challenge):
    response = client.get("/oauth/userinfo", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge


def test_offline_access_gives_a_refresh_token_that_rotates(client, browser, app, user):
    relying = register_app(app, public=True)
    tokens = tokens_for(client, browser, relying, user[0], scope="openid offline_access")
    first = tokens["refresh_token"]
    rotated = refresh(client, relying, first)
    assert rotated.status_code == 200, rotated.json
    assert rotated.json["refresh_token"] != first
    assert rotated.json["scope"] == "openid offline_access"
    userinfo = client.get("/oauth/userinfo", headers=bearer(rotated.json["access_token"]))
    assert userinfo.json["sub"] == user[1]


def test_a_replayed_refresh_token_ends_its_family(client, browser, app, user):
    # IDP_REFRESH_REUSE_GRACE is 0 by default: any second use of a spent token is a replay.
    relying = register_app(app, public=True)
    tokens = tokens_for(client, browser, relying, user[0], scope="openid offline_access")
    rotated = refresh(client, relying, tokens["refresh_token"]).json
    replayed = refresh(client, relying, tokens["refresh_token"])
    assert replayed.status_code == 400
    assert replayed.json["error"] == "invalid_grant"
    # The whole family is dead: the newest refresh token and every access token.
    assert refresh(client, relying, rotated["refresh_token"]).json["error"] == "invalid_grant"
    for access in (tokens["access_token"], rotated["access_token"]):
        assert client.get("/oauth/userinfo", headers=bearer(access)).status_code == 401
        assert verify_token(client, access).status_code == 401


def test_without_offline_access_there_is_no_refresh_token(client, browser, app, user):
    relying = register_app(app, public=True)
    tokens = tokens_for(client, browser, relying, user[0], scope="openid profile")
    assert "refresh_token" not in tokens
    assert "offline_access" not in tokens["scope"].split()


def test_a_refresh_token_belongs_to_its_client(client, browser, app, user):
    relying = register_app(app, public=True)
    other = register_app(app, public=True)
    tokens = tokens_for(client, browser, relying, user[0], scope="openid offline_access")
    stolen = refresh(client, other, tokens["refresh_token"])
    assert stolen.status_code == 400
    assert stolen.json["error"] == "invalid_grant"


# PKCE ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("public", [True, False], ids=["public", "confidential"])
def test_a_wrong_pkce_verifier_is_refused(client, browser, app, user, public):
    relying = register_app(app, public=public)
    _, challenge = pkce()
    code, _ = code_through_browser(browser, relying, user[0], challenge)
    response = redeem(client, relying, code, pkce()[0])
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"
    assert "access_token" not in response.json


@pytest.mark.parametrize("public", [True, False], ids=["public", "confidential"])
def test_a_missing_pkce_verifier_is_refused(client, browser, app, user, public):
    relying = register_app(app, public=public)
    _, challenge = pkce()
    code, _ = code_through_browser(browser, relying, user[0], challenge)
    response = redeem(client, relying, code, None)
    assert response.status_code == 400
    assert response.json["error"] in ("invalid_request", "invalid_grant")
    assert "access_token" not in response.json


def test_a_verifier_without_a_challenge_is_refused(client, browser, app, user):
    # A confidential client that sent no challenge cannot bolt one on at the token endpoint.
    relying = register_app(app)
    code, _ = code_through_browser(browser, relying, user[0], None)
    response = redeem(client, relying, code, pkce()[0])
    assert response.status_code == 400
    assert "access_token" not in response.json


@pytest.mark.parametrize(
    "method",
    [
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
        {"code_challenge_method": "s256"},
    ],
    ids=["plain", "missing", "lowercase"],
)
def test_a_challenge_that_is_not_s256_is_sent_back_to_the_app(browser, app, user, method):
    relying = register_app(app, public=True)
    _, challenge = pkce()
    params = authorize_params(relying, challenge, **method)
    response = start(browser, params)
    assert response.status_code in (302, 303)
    location = response.headers["Location"]
    assert location.startswith(f"{REDIRECT_URI}?")
    query = query_of(location)
    assert query["error"] == "invalid_request"
    assert query["state"] == params["state"]
    assert query["iss"] == ISSUER
    assert "code" not in query


def test_a_public_client_must_send_a_code_challenge(browser, app, user):
    relying = register_app(app, public=True)
    params = authorize_params(relying, None)
    response = start(browser, params)
    query = query_of(response.headers["Location"])
    assert response.headers["Location"].startswith(f"{REDIRECT_URI}?")
    assert query["error"] == "invalid_request"
    assert query["state"] == params["state"]
    assert query["iss"] == ISSUER


def test_an_authorization_request_may_be_posted_from_idps_own_origin(browser, app, user):
    relying = register_app(app, public=True, first_party=True)
    code_through_browser(browser, relying, user[0], pkce()[1])
    params = authorize_params(relying, pkce()[1])
    answer = browser.post("/oauth/authorize", data=params, headers={"Origin": ISSUER})
    assert "code" in query_of(answer.headers["Location"])


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {}, {"Origin": ISSUER, "Sec-Fetch-Site": "cross-site"}],
    ids=["foreign", "none", "fetch-cross-site"],
)
def test_a_post_from_the_apps_site_is_an_authorization_request_like_a_get(
    browser, app, user, headers
):
    # OIDC Core 3.1.2.1: the app may POST its request, from its own site. It is answered as
    # the same GET: a code goes only to the registered redirect URI. (A real browser sends no
    # SameSite=Lax cookie with a cross-site POST, so there the user is asked to sign in.)
    relying = register_app(app, public=True, first_party=True)
    code_through_browser(browser, relying, user[0], pkce()[1])
    params = authorize_params(relying, pkce()[1])
    answer = browser.post("/oauth/authorize", data=params, headers=headers)
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith(f"{relying.redirect_uri}?")
    assert query_of(answer.headers["Location"])["state"] == params["state"]


# Redirect URIs and clients -------------------------------------------------------------------

LOOK_ALIKES = [
    "https://app.example/callback/",
    "https://app.example/Callback",
    "https://APP.example/callback",
    "https://app.example/callback?x=1",
    "https://app.example/callback?",
    "https://app.example/callback#",
    "https://app.example/callback#frag",
    "https://app.example/callbackx",
    "https://app.example/callback/../callback",
    "https://app.example/callback/..%2Fevil",
    "https://app.example.evil.example/callback",
    "https://app.example@evil.example/callback",
    "https://evil.example@app.example/callback",
    "https://app.example:443/callback",
    "https://app.example:8443/callback",
    "http://app.example/callback",
    "https://app.example%2Fcallback",
    "https://app.example/%63allback",
    "https%3A%2F%2Fapp.example%2Fcallback",
    " https://app.example/callback",
    "//app.example/callback",
    "https://evil.example/callback",
    "javascript:alert(1)//https://app.example/callback",
    "https://app.example/callback?<script>alert(1)</script>",
]


@pytest.mark.parametrize("redirect_uri", LOOK_ALIKES)
def test_an_unregistered_redirect_uri_gets_idps_page_not_a_redirect(
    client, browser, app, user, redirect_uri
):
    relying = register_app(app, public=True)
    _, challenge = pkce()
    params = authorize_params(relying, challenge, redirect_uri=redirect_uri)
    # Without a session, and with one: neither the sign-in nor a code may lead there.
    response = start(browser, params)
    assert response.status_code == 400, response.headers
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"
    assert "<script" not in response.text
    code_through_browser(browser, relying, user[0], challenge)
    response = start(browser, params)
    assert response.status_code == 400
    assert "Location" not in response.headers


@pytest.mark.parametrize(
    "client_id",
    ["nobody", "", "0" * 32, "idp-api", "x" * 3000],
    ids=["unknown", "empty", "plausible", "api-client", "long"],
)
def test_an_unknown_client_gets_idps_page(browser, app, client_id):
    relying = register_app(app, public=True)
    params = authorize_params(relying, pkce()[1], client_id=client_id)
    response = start(browser, params)
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_a_missing_redirect_uri_gets_idps_page(browser, app):
    relying = register_app(app, public=True)
    _, challenge = pkce()
    params = authorize_params(relying, challenge)
    del params["redirect_uri"]
    response = start(browser, params)
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_a_service_client_cannot_start_a_sign_in(browser, app):
    with app.app_context():
        service = client_service.create_client("Batch", "openid", utcnow())
        commit()
        client_id = service.client.client_id
    _, challenge = pkce()
    params = authorize_params(
        App(client_id, "", REDIRECT_URI, public=False), challenge, client_id=client_id
    )
    response = start(browser, params)
    assert response.status_code == 400
    assert "Location" not in response.headers


# Codes ---------------------------------------------------------------------------------------


def test_a_reused_code_is_refused_and_ends_what_it_gave(client, browser, app, user):
    relying = register_app(app, public=True)
    verifier, challenge = pkce()
    code, _ = code_through_browser(
        browser, relying, user[0], challenge, scope="openid offline_access"
    )
    first = redeem(client, relying, code, verifier).json
    assert client.get("/oauth/userinfo", headers=bearer(first["access_token"])).status_code == 200
    again = redeem(client, relying, code, verifier)
    assert again.status_code == 400
    assert again.json["error"] == "invalid_grant"
    assert "access_token" not in again.json
    assert client.get("/oauth/userinfo", headers=bearer(first["access_token"])).status_code == 401
    assert verify_token(client, first["access_token"]).status_code == 401
    assert refresh(client, relying, first["refresh_token"]).json["error"] == "invalid_grant"


def test_a_reused_code_leaves_the_browser_session_alone(client, browser, app, user):
    # The replay may be an attacker's; the user's sign-in (and other apps) go on.
    relying = register_app(app, public=True, first_party=True)
    verifier, challenge = pkce()
    code, _ = code_through_browser(browser, relying, user[0], challenge)
    redeem(client, relying, code, verifier)
    redeem(client, relying, code, verifier)
    response = start(browser, authorize_params(relying, challenge))
    assert "code" in query_of(response.headers["Location"])


def test_of_racing_redemptions_one_gets_tokens_and_the_others_end_them(client, browser, app, user):
    # Four copies of one code at once: one pair of tokens; each other copy is a second use of
    # the code, however close behind, and revokes that pair (RFC 6749 4.1.2).
    relying = register_app(app, public=True)
    verifier, challenge = pkce()
    code, _ = code_through_browser(
        browser, relying, user[0], challenge, scope="openid offline_access"
    )
    barrier = threading.Barrier(4)
    answers: list[Any] = []

    def attempt() -> None:
        own = app.test_client()
        barrier.wait()
        answers.append(redeem(own, relying, code, verifier))

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answer.status_code for answer in answers) == [200, 400, 400, 400]
    refused = [answer.json for answer in answers if answer.status_code == 400]
    assert {answer["error"] for answer in refused} == {"invalid_grant"}
    assert not any("access_token" in answer for answer in refused)
    (won,) = [answer.json for answer in answers if answer.status_code == 200]
    assert client.get("/oauth/userinfo", headers=bearer(won["access_token"])).status_code == 401
    assert verify_token(client, won["access_token"]).status_code == 401
    assert refresh(client, relying, won["refresh_token"]).json["error"] == "invalid_grant"


@pytest.mark.parametrize("ending", ["sign-out", "password reset", "consent withdrawal"])
def test_a_redemption_cannot_outlive_an_ending_that_races_it(
    client, browser, app, user, mailbox, monkeypatch, ending
):
    # The code is read, then the browser session is signed out (or the password reset) before
    # the redemption commits: that waits for it (PostgreSQL: the user's and the browser
    # session's rows are locked FOR SHARE by the read; SQLite: one writer at a time) and then
    # ends the session it opened too.
    relying = register_app(app, public=True)
    first = tokens_for(client, browser, relying, user[0], scope="openid offline_access")
    verifier, challenge = pkce()
    code, _ = code_through_browser(
        browser, relying, user[0], challenge, scope="openid offline_access"
    )
    if ending == "sign-out":
        hint = {"id_token_hint": first["id_token"], "post_logout_redirect_uri": LOGOUT_URI}

        def end() -> Any:
            return browser.get("/oauth/logout", query_string=hint)

        ended_with = 303
    elif ending == "consent withdrawal":
        own = bearer(login(client, user[0]).json["data"]["token"])

        def end() -> Any:
            return app.test_client().delete(f"{API}/consents/{relying.client_id}/", headers=own)

        ended_with = 200
    else:
        client.post(f"{API}/password-reset/", json={"email": user[0]})
        reset = {"token": mailbox.wait_for(user[0], 2)[-1].token, "new_password": "Fresh-Secret-92"}

        def end() -> Any:
            return app.test_client().post(f"{API}/password-reset-confirm/", json=reset)

        ended_with = 200
    read, go = threading.Event(), threading.Event()
    redeem_as_written = AuthorizationService.redeem

    def redeem_after_the_ending_started(self: Any, *args: Any, **kwargs: Any) -> Any:
        read.set()
        go.wait(timeout=10)
        return redeem_as_written(self, *args, **kwargs)

    monkeypatch.setattr(AuthorizationService, "redeem", redeem_after_the_ending_started)
    answers: dict[str, Any] = {}

    def redemption() -> None:
        answers["token"] = redeem(app.test_client(), relying, code, verifier)

    def ending_it() -> None:
        answers["ending"] = end()

    racing = threading.Thread(target=redemption)
    racing.start()
    assert read.wait(timeout=10)
    ender = threading.Thread(target=ending_it)
    ender.start()
    ender.join(timeout=0.5)  # without the lock the ending finished here, before the redemption
    go.set()
    racing.join(timeout=30)
    ender.join(timeout=30)
    assert answers["ending"].status_code == ended_with, answers["ending"].get_data(as_text=True)
    # Refused outright (a withdrawal that deleted the code first), or given tokens that the
    # ending, which waited for the redemption, then ended.
    late = answers["token"].json
    if answers["token"].status_code == 400:
        assert late["error"] == "invalid_grant"
        return
    assert answers["token"].status_code == 200, late
    assert client.get("/oauth/userinfo", headers=bearer(late["access_token"])).status_code == 401
    assert refresh(client, relying, late["refresh_token"]).json["error"] == "invalid_grant"


def test_a_code_issued_before_consent_was_withdrawn_is_refused(client, browser, app, user):
    relying = register_app(app, public=True)
    verifier, challenge = pkce()
    code, _ = code_through_browser(browser, relying, user[0], challenge)
    own = bearer(login(client, user[0]).json["data"]["token"])
    assert client.delete(f"{API}/consents/{relying.client_id}/", headers=own).status_code == 200
    answer = redeem(client, relying, code, verifier)
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_grant"


def test_a_redemption_that_loses_a_race_ends_what_the_winner_got(client, browser, app, user):
    # Both read the code before either spent it (on PostgreSQL two requests can; SQLite runs
    # them one after the other): the second one's spend finds it used.
    relying = register_app(app, public=True)
    _verifier, challenge = pkce()
    code, _ = code_through_browser(
        browser, relying, user[0], challenge, scope="openid offline_access"
    )
    with app.test_request_context():
        authorizations = get_services().authorizations
        read = authorizations.find_code(code, relying.client_id, utcnow())
        won = authorizations.redeem(read, utcnow())
        commit()
        with pytest.raises(InvalidAuthorizationCode):
            authorizations.redeem(read, utcnow())
    access = bearer(won.tokens.access_token)
    assert client.get("/oauth/userinfo", headers=access).status_code == 401
    assert refresh(client, relying, won.tokens.refresh_token).json["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("late", "redeemed"),
    [(timedelta(seconds=55), True), (timedelta(seconds=61), False)],
    ids=["just-in-time", "expired"],
)
def test_a_code_lives_sixty_seconds(client, browser, app, user, monkeypatch, late, redeemed):
    relying = register_app(app, public=True)
    verifier, challenge = pkce()
    code, _ = code_through_browser(browser, relying, user[0], challenge)
    # The token endpoint's clock, moved on: the code was issued `late` ago.
    monkeypatch.setattr("idp.oauth.authorization_code.utcnow", lambda: utcnow() + late)
    response = redeem(client, relying, code, verifier)
    if redeemed:
        assert response.status_code == 200, response.json
    else:
        assert response.status_code == 400
        assert response.json["error"] == "invalid_grant"


def test_a_code_issued_to_one_client_is_refused_to_another(client, browser, app, user):
    relying = register_app(app, public=True)
    other = register_app(app, public=True)
    verifier, challenge = pkce()
    code, _ = code_through_browser(browser, relying, user[0], challenge)
    response = redeem(client, other, code, verifier)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "redirect_uri",
    ["https://app.example/other", "https://app.example/callback/", None],
    ids=["other", "trailing-slash", "missing"],
)
def test_the_token_request_must_repeat_the_redirect_uri(client, browser, app, user, redirect_uri):
    relying = register_app(app)
    verifier, challenge = pkce()
    code, _ = code_through_browser(browser, relying, user[0], challenge)
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
    if redirect_uri is not None:
        data["redirect_uri"] = redirect_uri
    response = client.post("/oauth/token", data=data, headers=relying.token_auth()["headers"])
    assert response.status_code == 400
    assert response.json["error"] in ("invalid_grant", "invalid_request")
    assert "access_token" not in response.json


@pytest.mark.parametrize(
    "code",
    ["", "x" * 65, "nope", "a b", "\x00"],
    ids=["empty", "long", "unknown", "space", "nul"],
)
def test_a_made_up_code_is_refused(client, app, code):
    relying = register_app(app, public=True)
    response = redeem(client, relying, code, pkce()[0])
    assert response.status_code == 400
    assert response.json["error"] in ("invalid_grant", "invalid_request")


# prompt, max_age -----------------------------------------------------------------------------


def test_prompt_none_without_a_session_is_login_required(browser, app):
    relying = register_app(app, public=True)
    params = authorize_params(relying, pkce()[1], prompt="none")
    response = start(browser, params)
    assert response.headers["Location"].startswith(f"{REDIRECT_URI}?")
    query = query_of(response.headers["Location"])
    assert query["error"] == "login_required"
    assert query["state"] == params["state"]
    assert query["iss"] == ISSUER
    assert "code" not in query


def test_prompt_none_without_consent_is_consent_required(browser, app, user):
    first = register_app(app, public=True, first_party=True)
    code_through_browser(browser, first, user[0], pkce()[1])
    third = register_app(app, public=True)
    params = authorize_params(third, pkce()[1], prompt="none")
    query = query_of(start(browser, params).headers["Location"])
    assert query["error"] == "consent_required"
    assert query["state"] == params["state"]
    assert query["iss"] == ISSUER


def test_prompt_none_with_a_session_and_consent_gives_a_code(browser, app, user):
    relying = register_app(app, public=True)
    code_through_browser(browser, relying, user[0], pkce()[1])
    params = authorize_params(relying, pkce()[1], prompt="none")
    assert "code" in query_of(start(browser, params).headers["Location"])


@pytest.mark.parametrize(
    "extra",
    [
        {"prompt": "bogus"},
        {"prompt": "none login"},
        {"max_age": "-1"},
        {"max_age": "soon"},
        {"response_mode": "fragment"},
        {"response_type": "token"},
        {"response_type": "code id_token"},
        {"nonce": "n" * 256},
        {"code_challenge": "a" * 42},
        {"code_challenge": "a" * 129},
        {"code_challenge": "a" * 42 + "="},
    ],
    ids=[
        "prompt",
        "none-and-login",
        "negative-max-age",
        "word-max-age",
        "fragment",
        "token",
        "hybrid",
        "long-nonce",
        "short-challenge",
        "long-challenge",
        "padded-challenge",
    ],
)
def test_a_malformed_request_is_sent_back_to_the_app(browser, app, extra):
    relying = register_app(app, public=True)
    params = authorize_params(relying, pkce()[1], **extra)
    response = start(browser, params)
    location = response.headers["Location"]
    assert location.startswith(f"{REDIRECT_URI}?"), location
    query = query_of(location)
    assert query["error"] in ("invalid_request", "unsupported_response_type")
    assert query["state"] == params["state"]
    assert query["iss"] == ISSUER
    assert "#" not in location


def test_prompt_login_asks_for_the_password_again(client, browser, app, user, monkeypatch):
    relying = register_app(app, public=True, first_party=True)
    first = tokens_for(client, browser, relying, user[0])
    first_time = id_token_claims(client, first["id_token"], relying.client_id)["auth_time"]
    verifier, challenge = pkce()
    params = authorize_params(relying, challenge, prompt="login")
    response = start(browser, params)
    assert urlsplit(response.headers["Location"]).path == "/signin"
    # Time moves on before the user signs in again.
    shift_clock(monkeypatch, 5)
    answer = follow_to_app(browser, response, user[0])
    code = query_of(answer.headers["Location"])["code"]
    tokens = redeem(client, relying, code, verifier).json
    claims = id_token_claims(client, tokens["id_token"], relying.client_id)
    assert claims["auth_time"] >= first_time + 5


def test_prompt_login_cannot_be_skipped_by_going_straight_back(browser, app, user):
    relying = register_app(app, public=True, first_party=True)
    code_through_browser(browser, relying, user[0], pkce()[1])
    to_sign_in = start(browser, authorize_params(relying, pkce()[1], prompt="login"))
    interaction = query_of(to_sign_in.headers["Location"])["interaction"]
    skipped = browser.get(f"/oauth/authorize/continue?{urlencode({'interaction': interaction})}")
    assert urlsplit(skipped.headers["Location"]).path == "/signin"


def test_prompt_consent_cannot_be_skipped_by_going_straight_back(browser, app, user):
    relying = register_app(app, public=True)
    code_through_browser(browser, relying, user[0], pkce()[1])
    to_consent = start(browser, authorize_params(relying, pkce()[1], prompt="consent"))
    interaction = query_of(to_consent.headers["Location"])["interaction"]
    skipped = browser.get(f"/oauth/authorize/continue?{urlencode({'interaction': interaction})}")
    assert urlsplit(skipped.headers["Location"]).path == "/consent"


def shift_clock(monkeypatch: Any, seconds: int) -> None:
    """Move the browser endpoints' clock on (the hosted pages and /oauth/authorize)."""
    later = lambda: utcnow() + timedelta(seconds=seconds)  # noqa: E731
    for module in ("idp.oauth.browser_views", "idp.pages.views"):
        monkeypatch.setattr(f"{module}.utcnow", later)


@pytest.mark.parametrize(
    ("max_age", "elapsed", "asks"),
    [("0", 1, True), ("30", 60, True), ("300", 60, False)],
    ids=["zero", "older", "fresh-enough"],
)
def test_max_age_asks_for_the_password_when_the_sign_in_is_older(
    client, browser, app, user, monkeypatch, max_age, elapsed, asks
):
    relying = register_app(app, public=True, first_party=True)
    first = tokens_for(client, browser, relying, user[0])
    first_time = id_token_claims(client, first["id_token"], relying.client_id)["auth_time"]
    shift_clock(monkeypatch, elapsed)
    verifier, challenge = pkce()
    response = start(browser, authorize_params(relying, challenge, max_age=max_age))
    if not asks:
        code = query_of(response.headers["Location"])["code"]
        tokens = redeem(client, relying, code, verifier).json
        assert id_token_claims(client, tokens["id_token"], relying.client_id)["auth_time"] == (
            first_time
        )
        return
    assert urlsplit(response.headers["Location"]).path == "/signin"
    answer = follow_to_app(browser, response, user[0])
    code = query_of(answer.headers["Location"])["code"]
    tokens = redeem(client, relying, code, verifier).json
    claims = id_token_claims(client, tokens["id_token"], relying.client_id)
    assert claims["auth_time"] >= first_time + elapsed


def test_prompt_none_with_a_sign_in_older_than_max_age_is_login_required(
    client, browser, app, user, monkeypatch
):
    relying = register_app(app, public=True, first_party=True)
    code_through_browser(browser, relying, user[0], pkce()[1])
    shift_clock(monkeypatch, 120)
    params = authorize_params(relying, pkce()[1], prompt="none", max_age="60")
    query = query_of(start(browser, params).headers["Location"])
    assert query["error"] == "login_required"
    assert query["state"] == params["state"]


@pytest.mark.parametrize(
    ("settings", "elapsed"),
    [
        ({}, 24 * 3600 + 60),  # idle for longer than a day
        ({"IDP_BROWSER_SESSION_MAX_AGE": 600, "IDP_BROWSER_SESSION_IDLE": 3600}, 11 * 60),
    ],
    ids=["idle", "absolute"],
)
def test_a_browser_session_runs_out(make_app, mailbox, monkeypatch, settings, elapsed):
    app = make_app(**settings)
    email = unique_email("oidc")
    register_and_verify(app.test_client(), mailbox, email)
    browser = app.test_client()
    relying = register_app(app, public=True, first_party=True)
    code_through_browser(browser, relying, email, pkce()[1])
    shift_clock(monkeypatch, elapsed)
    query = query_of(
        start(browser, authorize_params(relying, pkce()[1], prompt="none")).headers["Location"]
    )
    assert query["error"] == "login_required"


# Consent -------------------------------------------------------------------------------------


def test_a_third_party_client_asks_for_consent_naming_itself_and_the_scopes(browser, app, user):
    relying = register_app(app, public=True, name="Zebra <Planner>")
    params = authorize_params(relying, pkce()[1], scope="openid email")
    signed_in = sign_in(browser, start(browser, params).headers["Location"], user[0])
    to_consent = browser.get(signed_in.headers["Location"])
    assert urlsplit(to_consent.headers["Location"]).path == "/consent"
    page = browser.get(to_consent.headers["Location"])
    assert page.status_code == 200
    assert "Zebra &lt;Planner&gt;" in page.text
    assert "Zebra <Planner>" not in page.text
    assert "<code>openid</code>" in page.text
    assert "<code>email</code>" in page.text
    assert "<code>profile</code>" not in page.text
    assert user[0] in page.text


def test_consent_is_remembered(browser, app, user):
    relying = register_app(app, public=True)
    code_through_browser(browser, relying, user[0], pkce()[1])
    response = start(browser, authorize_params(relying, pkce()[1]))
    assert leaves_idp(response)
    assert "code" in query_of(response.headers["Location"])


def test_a_broader_scope_asks_again(browser, app, user):
    relying = register_app(app, public=True)
    code_through_browser(browser, relying, user[0], pkce()[1], scope="openid")
    response = start(browser, authorize_params(relying, pkce()[1], scope="openid email"))
    assert urlsplit(response.headers["Location"]).path == "/consent"
    # A narrower one does not.
    response = start(browser, authorize_params(relying, pkce()[1], scope="openid"))
    assert "code" in query_of(response.headers["Location"])


def test_prompt_consent_asks_again_even_when_remembered(browser, app, user):
    relying = register_app(app, public=True)
    code_through_browser(browser, relying, user[0], pkce()[1])
    params = authorize_params(relying, pkce()[1], prompt="consent")
    response = start(browser, params)
    assert urlsplit(response.headers["Location"]).path == "/consent"
    answer = follow_to_app(browser, response, user[0])
    assert "code" in query_of(answer.headers["Location"])


def test_prompt_consent_with_first_party_still_asks(browser, app, user):
    # OIDC Core 3.1.2.1: prompt=consent means the user is asked, whoever the client is.
    relying = register_app(app, public=True, first_party=True)
    code_through_browser(browser, relying, user[0], pkce()[1])
    response = start(browser, authorize_params(relying, pkce()[1], prompt="consent"))
    assert urlsplit(response.headers["Location"]).path == "/consent"
    answer = follow_to_app(browser, response, user[0])
    assert "code" in query_of(answer.headers["Location"])


def test_deny_is_access_denied_with_state_and_iss(browser, app, user):
    relying = register_app(app, public=True)
    params = authorize_params(relying, pkce()[1])
    answer = follow_to_app(browser, start(browser, params), user[0], approve=False)
    location = answer.headers["Location"]
    assert location.startswith(f"{REDIRECT_URI}?")
    query = query_of(location)
    query.pop("error_description", None)
    assert query == {"error": "access_denied", "state": params["state"], "iss": ISSUER}
    # Nothing was remembered: the next request asks again.
    again = start(browser, authorize_params(relying, pkce()[1]))
    assert urlsplit(again.headers["Location"]).path == "/consent"


def test_a_scope_the_client_is_not_registered_for_is_neither_shown_nor_granted(
    client, browser, app, user
):
    relying = register_app(app, public=True, scope="openid")
    verifier, challenge = pkce()
    params = authorize_params(relying, challenge, scope="openid email profile offline_access")
    signed_in = sign_in(browser, start(browser, params).headers["Location"], user[0])
    page = browser.get(browser.get(signed_in.headers["Location"]).headers["Location"])
    assert "<code>openid</code>" in page.text
    for scope in ("email", "profile", "offline_access"):
        assert f"<code>{scope}</code>" not in page.text
    answer = follow_to_app(browser, signed_in, user[0])
    tokens = redeem(client, relying, query_of(answer.headers["Location"])["code"], verifier).json
    assert tokens["scope"] == "openid"
    assert "refresh_token" not in tokens
    userinfo = client.get("/oauth/userinfo", headers=bearer(tokens["access_token"]))
    assert set(userinfo.json) == {"sub"}


def test_a_first_party_client_skips_consent(browser, app, user):
    relying = register_app(app, public=True, first_party=True)
    params = authorize_params(relying, pkce()[1])
    signed_in = sign_in(browser, start(browser, params).headers["Location"], user[0])
    answer = browser.get(signed_in.headers["Location"])
    assert leaves_idp(answer)
    assert "code" in query_of(answer.headers["Location"])


def test_consent_for_one_client_is_not_consent_for_another(browser, app, user):
    relying = register_app(app, public=True)
    code_through_browser(browser, relying, user[0], pkce()[1])
    other = register_app(app, public=True, name="Other")
    response = start(browser, authorize_params(other, pkce()[1]))
    assert urlsplit(response.headers["Location"]).path == "/consent"


def test_consent_cannot_be_pointed_at_another_client(browser, app, user):
    # The consent form's interaction is signed: a user asked to approve one client cannot have
    # that approval land on another (or another redirect URI) by editing the hidden field.
    relying = register_app(app, public=True)
    other = register_app(app, public=True, name="Other")
    params = authorize_params(relying, pkce()[1])
    signed_in = sign_in(browser, start(browser, params).headers["Location"], user[0])
    page = browser.get(browser.get(signed_in.headers["Location"]).headers["Location"])
    forged = tampered(
        hidden(page.text, "interaction"), lambda data: data["p"].update(client_id=other.client_id)
    )
    response = browser.post(
        "/consent",
        data={
            "csrf_token": csrf_token(page.text),
            "interaction": forged,
            "account": hidden(page.text, "account"),
            "approve": "Allow",
        },
        headers={"Origin": ISSUER},
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    # Nothing was remembered for either client.
    for asked in (relying, other):
        again = start(browser, authorize_params(asked, pkce()[1]))
        assert urlsplit(again.headers["Location"]).path == "/consent"


# Single sign-on and logout -------------------------------------------------------------------


def test_a_second_client_gets_a_code_without_the_password(client, browser, app, user):
    first = register_app(app, public=True)
    code_through_browser(browser, first, user[0], pkce()[1])
    second = register_app(app, public=True, name="Second")
    verifier, challenge = pkce()
    params = authorize_params(second, challenge)
    to_consent = start(browser, params)
    assert urlsplit(to_consent.headers["Location"]).path == "/consent"
    answer = consent(browser, to_consent.headers["Location"])
    code = query_of(answer.headers["Location"])["code"]
    tokens = redeem(client, second, code, verifier).json
    assert id_token_claims(client, tokens["id_token"], second.client_id)["sub"] == user[1]


def test_an_app_may_post_its_logout_request(client, browser, app, user):
    # RP-Initiated Logout 2: the same parameters as a form POST, no CSRF token (it is not our
    # form); answered as the GET is.
    relying = register_app(app, public=True)
    tokens = tokens_for(client, browser, relying, user[0], scope="openid offline_access")
    form = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": LOGOUT_URI}
    elsewhere = browser.post(
        "/oauth/logout", data={**form, "post_logout_redirect_uri": "https://evil.example/"}
    )
    assert elsewhere.status_code == 400
    assert "Location" not in elsewhere.headers
    response = browser.post("/oauth/logout", data={**form, "state": "bye"})
    assert response.status_code == 303
    assert response.headers["Location"] == f"{LOGOUT_URI}?state=bye"
    assert refresh(client, relying, tokens["refresh_token"]).json["error"] == "invalid_grant"


def test_a_cookieless_post_from_an_app_is_sent_on_as_the_same_get(client, browser, app, user):
    # A cross-site form POST carries no SameSite=Lax cookie: answering it directly would say
    # "signed out" and end nothing, or ignore the sign-in. A 303 makes the browser GET it, with
    # the cookie.
    relying = register_app(app, public=True)
    tokens = tokens_for(client, browser, relying, user[0], scope="openid offline_access")
    cookieless = app.test_client()
    form = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": LOGOUT_URI}
    answer = cookieless.post("/oauth/logout", data={**form, "state": "bye"})
    assert answer.status_code == 303
    location = answer.headers["Location"]
    assert location.startswith("/oauth/logout?")
    assert query_of(location) == {**form, "state": "bye"}
    assert refresh(client, relying, tokens["refresh_token"]).status_code == 200  # nothing ended
    followed = browser.get(location)  # the browser's GET, with its cookie
    assert followed.headers["Location"] == f"{LOGOUT_URI}?state=bye"
    assert refresh(client, relying, tokens["refresh_token"]).status_code == 400

    params = authorize_params(relying, pkce()[1])
    again = cookieless.post("/oauth/authorize", data=params)
    assert again.status_code == 303
    assert again.headers["Location"].startswith("/oauth/authorize?")
    assert query_of(again.headers["Location"]) == params


def test_logout_with_a_hint_ends_the_session_and_returns_to_the_app(client, browser, app, user):
    relying = register_app(app, public=True)
    other = register_app(app, public=True, name="Other")
    tokens = tokens_for(client, browser, relying, user[0], scope="openid offline_access")
    other_tokens = tokens_for(client, browser, other, user[0], scope="openid offline_access")
    response = browser.get(
        "/oauth/logout",
        query_string={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": LOGOUT_URI,
            "state": "bye",
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"{LOGOUT_URI}?state=bye"
    cleared = response.headers.getlist("Set-Cookie")
    assert any(c.startswith("idp_session=;") and "Max-Age=0" in c for c in cleared), cleared
    # Every refresh token issued through that browser session is dead, whichever app holds it.
    for relying_app, issued in ((relying, tokens), (other, other_tokens)):
        assert refresh(client, relying_app, issued["refresh_token"]).json["error"] == (
            "invalid_grant"
        )
        access = bearer(issued["access_token"])
        assert client.get("/oauth/userinfo", headers=access).status_code == 401
        assert verify_token(client, issued["access_token"]).status_code == 401
    again = start(browser, authorize_params(relying, pkce()[1]))
    assert urlsplit(again.headers["Location"]).path == "/signin"


def test_logout_ends_the_session_even_when_the_browser_keeps_the_cookie(client, browser, app, user):
    relying = register_app(app, public=True, first_party=True)
    tokens = tokens_for(client, browser, relying, user[0])
    cookie = browser.get_cookie("idp_session")
    browser.get("/oauth/logout", query_string={"id_token_hint": tokens["id_token"]})
    browser.set_cookie("idp_session", cookie.value)
    again = start(browser, authorize_params(relying, pkce()[1], prompt="none"))
    assert query_of(again.headers["Location"])["error"] == "login_required"


def test_logout_without_a_hint_asks_first_and_ends_nothing(client, browser, app, user):
    relying = register_app(app, public=True, first_party=True)
    tokens = tokens_for(client, browser, relying, user[0], scope="openid offline_access")
    page = browser.get(
        "/oauth/logout",
        query_string={
            "client_id": relying.client_id,
            "post_logout_redirect_uri": LOGOUT_URI,
            "state": "s",
        },
    )
    assert page.status_code == 200
    assert user[0] in page.text
    assert "Set-Cookie" not in page.headers or "idp_session" not in page.headers["Set-Cookie"]
    # Nothing has ended yet.
    still = start(browser, authorize_params(relying, pkce()[1], prompt="none"))
    assert "code" in query_of(still.headers["Location"])
    assert client.get("/oauth/userinfo", headers=bearer(tokens["access_token"])).status_code == 200
    done = browser.post(
        "/oauth/logout",
        data={"csrf_token": csrf_token(page.text), "logout": hidden(page.text, "logout")},
        headers={"Origin": ISSUER},
    )
    assert done.status_code == 303
    assert done.headers["Location"] == f"{LOGOUT_URI}?state=s"
    assert client.get("/oauth/userinfo", headers=bearer(tokens["access_token"])).status_code == 401
    assert refresh(client, relying, tokens["refresh_token"]).json["error"] == "invalid_grant"
    again = start(browser, authorize_params(relying, pkce()[1], prompt="none"))
    assert query_of(again.headers["Location"])["error"] == "login_required"


def test_an_id_token_hint_from_another_browser_session_asks_first(client, browser, app, user):
    # A hint names the session it was issued in; another browser's sign-in is not ended by it.
    relying = register_app(app, public=True, first_party=True)
    tokens = tokens_for(client, browser, relying, user[0])
    other_browser = app.test_client()
    tokens_for(client, other_browser, relying, user[0])
    page = other_browser.get("/oauth/logout", query_string={"id_token_hint": tokens["id_token"]})
    assert page.status_code == 200
    still = start(other_browser, authorize_params(relying, pkce()[1], prompt="none"))
    assert "code" in query_of(still.headers["Location"])


@pytest.mark.parametrize(
    "uri",
    [
        "https://evil.example/",
        f"{LOGOUT_URI}/",
        f"{LOGOUT_URI}?next=https://evil.example/",
        REDIRECT_URI,  # a redirect URI is not a post-logout one
        "//evil.example/",
        quote(LOGOUT_URI, safe=""),
    ],
)
@pytest.mark.parametrize("with_hint", [True, False], ids=["hint", "client_id"])
def test_logout_to_an_unregistered_uri_gets_idps_page(client, browser, app, user, uri, with_hint):
    relying = register_app(app, public=True, first_party=True)
    tokens = tokens_for(client, browser, relying, user[0])
    named = {"id_token_hint": tokens["id_token"]} if with_hint else {"client_id": relying.client_id}
    response = browser.get("/oauth/logout", query_string={**named, "post_logout_redirect_uri": uri})
    assert response.status_code == 400
    assert "Location" not in response.headers
    # And the session did not end.
    still = start(browser, authorize_params(relying, pkce()[1], prompt="none"))
    assert "code" in query_of(still.headers["Location"])


@pytest.mark.parametrize(
    "names",
    ["hint", "hint-and-its-client", "hint-and-the-other-client"],
)
def test_logout_to_another_clients_uri_gets_idps_page(client, browser, app, user, names):
    relying = register_app(app, public=True, first_party=True)
    other = register_app(app, public=True, post_logout_redirect_uri="https://other.example/bye")
    tokens = tokens_for(client, browser, relying, user[0])
    query = {
        "id_token_hint": tokens["id_token"],
        "post_logout_redirect_uri": "https://other.example/bye",
    }
    if names == "hint-and-its-client":
        query["client_id"] = relying.client_id
    elif names == "hint-and-the-other-client":
        query["client_id"] = other.client_id
    response = browser.get("/oauth/logout", query_string=query)
    assert response.status_code == 400
    assert "Location" not in response.headers


def forged_id_token(client: FlaskClient, claims: dict[str, Any], how: str) -> str:
    """An ID token an attacker can make: their own RSA key under our kid, or HS256 keyed with
    our public key (algorithm confusion), or no signature at all."""
    public = client.get("/.well-known/jwks.json").json["keys"][0]
    header = {"kid": public["kid"]}
    if how == "own-key":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(claims, key, algorithm="RS256", headers=header)
    if how == "hs256":
        pem = jwt.PyJWK(public).key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        signing_input = ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
            for part in ({"alg": "HS256", "typ": "JWT", **header}, claims)
        )
        signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    return jwt.encode(claims, None, algorithm="none", headers=header)


@pytest.mark.parametrize("how", ["own-key", "hs256", "none"])
def test_a_forged_id_token_hint_ends_nothing_and_leads_nowhere(client, browser, app, user, how):
    relying = register_app(app, public=True, first_party=True)
    tokens = tokens_for(client, browser, relying, user[0])
    claims = id_token_claims(client, tokens["id_token"], relying.client_id)
    forged = forged_id_token(client, {**claims, "aud": relying.client_id}, how)
    response = browser.get(
        "/oauth/logout",
        query_string={"id_token_hint": forged, "post_logout_redirect_uri": LOGOUT_URI},
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    still = start(browser, authorize_params(relying, pkce()[1], prompt="none"))
    assert "code" in query_of(still.headers["Location"])


@pytest.mark.parametrize(
    "hint",
    [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.eyJzaWQiOiJ4In0.",
        "\u00e9.\u00e9.\u00e9",
        "a.b.c.d.e",
        "x" * 9000,
        "eyJhbGciOiJSUzI1NiIsImtpZCI6WzFdfQ.e30.AAAA",
    ],
    ids=["garbage", "three-parts", "alg-none", "non-ascii", "five-parts", "long", "list-kid"],
)
def test_a_forged_id_token_hint_gets_idps_page(browser, app, hint):
    response = browser.get(
        "/oauth/logout",
        query_string={"id_token_hint": hint, "post_logout_redirect_uri": LOGOUT_URI},
    )
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_an_access_token_is_not_an_id_token_hint(client, browser, app, user):
    relying = register_app(app, public=True, first_party=True)
    tokens = tokens_for(client, browser, relying, user[0])
    response = browser.get(
        "/oauth/logout",
        query_string={
            "id_token_hint": tokens["access_token"],
            "post_logout_redirect_uri": LOGOUT_URI,
        },
    )
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_signing_in_again_keeps_the_other_apps_tokens(client, browser, app, user):
    # A step-up sign-in for one app (prompt=login) is the same user proving themselves again;
    # the apps they already use keep their tokens. A different user's sign-in is another matter.
    first = register_app(app, public=True, first_party=True)
    tokens = tokens_for(client, browser, first, user[0], scope="openid offline_access")
    second = register_app(app, public=True, first_party=True, name="Second")
    tokens_for(client, browser, second, user[0], prompt="login")
    assert refresh(client, first, tokens["refresh_token"]).status_code == 200


def test_another_user_signing_in_on_the_same_browser_ends_the_first_users_apps(
    client, browser, app, user, mailbox
):
    # A shared computer: once someone else signs in, the first user's apps lose what was
    # issued through this browser.
    first = register_app(app, public=True, first_party=True)
    tokens = tokens_for(client, browser, first, user[0], scope="openid offline_access")
    someone_else = unique_email("else")
    register_and_verify(client, mailbox, someone_else)
    tokens_for(client, browser, first, someone_else, prompt="login")
    assert refresh(client, first, tokens["refresh_token"]).status_code == 400
    userinfo = client.get("/oauth/userinfo", headers=bearer(tokens["access_token"]))
    assert userinfo.status_code == 401


# Open redirects ------------------------------------------------------------------------------

EVIL = "https://evil.example/"


def assert_stays_home(response: Any) -> None:
    location = response.headers.get("Location")
    if location is None:
        return
    parts = urlsplit(location)
    assert (not parts.scheme and not parts.netloc) or location.startswith(
        (f"{ISSUER}/", REDIRECT_URI, LOGOUT_URI)
    ), location
    assert not location.startswith("//"), location


@pytest.mark.parametrize(
    "query",
    [
        {"next": EVIL},
        {"return_to": EVIL},
        {"redirect": EVIL},
        {"login_hint": EVIL},
        {"login_hint": "//evil.example/"},
        {"redirect_uri": EVIL},
        {"interaction": EVIL},
    ],
)
@pytest.mark.parametrize("path", ["/signin", "/signed-in", "/consent", "/oauth/authorize/continue"])
def test_no_url_parameter_leads_off_idp_on_a_get(browser, app, user, query, path):
    response = browser.get(path, query_string=query)
    assert_stays_home(response)


def test_no_url_parameter_leads_off_idp_through_the_flow(browser, app, user):
    relying = register_app(app, public=True)
    params = authorize_params(relying, pkce()[1], login_hint=EVIL, next=EVIL, return_to=EVIL)
    response = start(browser, params)
    assert_stays_home(response)
    signed_in = sign_in(browser, response.headers["Location"], user[0])
    assert_stays_home(signed_in)
    # A sign-in with an interaction that is a URL goes to idp's own page.
    page = browser.get("/signin")
    response = browser.post(
        "/signin",
        data={
            "csrf_token": csrf_token(page.text),
            "interaction": EVIL,
            "email": user[0],
            "password": "Correct-Horse-7",
            "next": EVIL,
        },
        headers={"Origin": ISSUER},
    )
    assert_stays_home(response)
    assert_stays_home(browser.get(response.headers["Location"]))


@pytest.mark.parametrize(
    "state",
    ["x&code=forged&iss=https://evil.example", "x#https://evil.example/", "a+b %2F c=?"],
    ids=["parameters", "fragment", "encoded"],
)
def test_the_state_cannot_add_parameters_to_the_answer(browser, app, user, state):
    relying = register_app(app, public=True, first_party=True)
    code_through_browser(browser, relying, user[0], pkce()[1])
    location = start(browser, authorize_params(relying, pkce()[1], state=state)).headers["Location"]
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == REDIRECT_URI
    assert not parts.fragment
    query = parse_qs(parts.query)
    assert query["state"] == [state]
    assert query["iss"] == [ISSUER]
    assert len(query["code"]) == 1 and query["code"][0] != "forged"


@pytest.mark.parametrize(
    "change",
    [
        lambda data: data["p"].update(redirect_uri=EVIL),
        lambda data: data["p"].update(code_challenge=pkce()[1]),
        lambda data: data["p"].pop("code_challenge"),
        lambda data: data.update(t=data["t"] + 3600),
    ],
    ids=["redirect-uri", "challenge", "no-challenge", "since"],
)
def test_a_tampered_interaction_gets_idps_page(browser, app, user, change):
    relying = register_app(app, public=True, first_party=True)
    location = start(browser, authorize_params(relying, pkce()[1])).headers["Location"]
    forged = tampered(query_of(location)["interaction"], change)
    signed_in = sign_in(browser, f"/signin?{urlencode({'interaction': forged})}", user[0])
    assert_stays_home(signed_in)
    response = browser.get(signed_in.headers["Location"])
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_an_interaction_signed_with_another_key_gets_idps_page(browser, app, user):
    from itsdangerous import URLSafeTimedSerializer

    from idp.oauth.authorize import INTERACTION_SALT

    relying = register_app(app, public=True, first_party=True)
    params = authorize_params(relying, pkce()[1], redirect_uri=EVIL)
    forged = URLSafeTimedSerializer("attacker", salt=INTERACTION_SALT).dumps(
        {"p": params, "t": utcnow().timestamp()}
    )
    code_through_browser(browser, relying, user[0], pkce()[1])
    response = browser.get(f"/oauth/authorize/continue?{urlencode({'interaction': forged})}")
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_a_redirect_uri_of_another_client_is_refused(browser, app, user):
    relying = register_app(app, public=True)
    other = register_app(app, public=True, redirect_uri="https://other.example/cb")
    params = authorize_params(relying, pkce()[1], redirect_uri=other.redirect_uri)
    response = start(browser, params)
    assert response.status_code == 400
    assert "Location" not in response.headers


# Disabled users ------------------------------------------------------------------------------


def disable(app: Flask, email: str) -> None:
    result = app.test_cli_runner().invoke(args=["users", "disable", email])
    assert result.exit_code == 0, result.output


def test_a_disabled_users_browser_session_yields_no_code(browser, app, user):
    relying = register_app(app, public=True, first_party=True)
    code_through_browser(browser, relying, user[0], pkce()[1])
    disable(app, user[0])
    response = start(browser, authorize_params(relying, pkce()[1]))
    assert urlsplit(response.headers["Location"]).path == "/signin"
    response = start(browser, authorize_params(relying, pkce()[1], prompt="none"))
    assert query_of(response.headers["Location"])["error"] == "login_required"
    # Nor can they sign in again.
    signed_in = sign_in(browser, "/signin", user[0])
    assert signed_in.status_code in (400, 401)  # the form again, no session
    assert "idp_session=" not in str(signed_in.headers.getlist("Set-Cookie"))


@pytest.mark.parametrize("how", ["sign-out", "password-reset"])
def test_an_admin_sign_out_or_a_password_reset_ends_the_browser_session(
    client, browser, app, user, mailbox, how
):
    relying = register_app(app, public=True, first_party=True)
    verifier, challenge = pkce()
    code, _ = code_through_browser(browser, relying, user[0], challenge)
    if how == "sign-out":
        result = app.test_cli_runner().invoke(args=["users", "sign-out", user[0]])
        assert result.exit_code == 0, result.output
    else:
        client.post(f"{API}/password-reset/", json={"email": user[0]})
        token = mailbox.wait_for(user[0], 2)[-1].token
        confirmed = client.post(
            f"{API}/password-reset-confirm/",
            json={"token": token, "new_password": "Brand-New-Secret-9"},
        )
        assert confirmed.status_code == 200, confirmed.json
    assert redeem(client, relying, code, verifier).json["error"] == "invalid_grant"
    answer = start(browser, authorize_params(relying, challenge, prompt="none"))
    assert query_of(answer.headers["Location"])["error"] == "login_required"


def test_a_disabled_users_unredeemed_code_fails(client, browser, app, user):
    relying = register_app(app, public=True)
    verifier, challenge = pkce()
    code, _ = code_through_browser(browser, relying, user[0], challenge)
    disable(app, user[0])
    response = redeem(client, relying, code, verifier)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"


def test_a_disabled_users_tokens_stop_working(client, browser, app, user):
    relying = register_app(app, public=True)
    tokens = tokens_for(client, browser, relying, user[0], scope="openid offline_access")
    disable(app, user[0])
    assert client.get("/oauth/userinfo", headers=bearer(tokens["access_token"])).status_code == 401
    assert verify_token(client, tokens["access_token"]).status_code == 401
    assert refresh(client, relying, tokens["refresh_token"]).json["error"] == "invalid_grant"


def test_enabling_a_user_again_does_not_revive_their_old_sign_in(client, browser, app, user):
    relying = register_app(app, public=True, first_party=True)
    tokens = tokens_for(client, browser, relying, user[0], scope="openid offline_access")
    disable(app, user[0])
    result = app.test_cli_runner().invoke(args=["users", "enable", user[0]])
    assert result.exit_code == 0, result.output
    answer = start(browser, authorize_params(relying, pkce()[1], prompt="none"))
    assert query_of(answer.headers["Location"])["error"] == "login_required"
    assert client.get("/oauth/userinfo", headers=bearer(tokens["access_token"])).status_code == 401
    assert refresh(client, relying, tokens["refresh_token"]).json["error"] == "invalid_grant"
    # A new sign-in works.
    assert "access_token" in tokens_for(client, browser, relying, user[0])
