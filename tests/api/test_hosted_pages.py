"""The hosted pages' own defences, from a hostile site and a hostile network's point of view.

CSRF tokens and the Origin check on every form, the headers every page carries, the session
cookie (its flags, a new value at every sign-in), and what the sign-in page does with the
request's parameters. The protocol itself is in test_authorization_code.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from idp.clock import utcnow
from tests.flows import PASSWORD, register_and_verify, unique_email
from tests.oidc_flows import (
    ISSUER,
    LOGOUT_URI,
    ORIGIN,
    authorize_params,
    code_through_browser,
    csrf_token,
    hidden,
    pkce,
    query_of,
    redeem,
    register_app,
    sign_in,
    start,
    tampered,
)

COOKIE = "idp_session"
EVIL_ORIGIN = "https://evil.example"


@pytest.fixture
def email(client: FlaskClient, mailbox: Any) -> str:
    address = unique_email("pages")
    register_and_verify(client, mailbox, address)
    return address


def sign_in_page(browser: FlaskClient, app: Flask, **query: str) -> tuple[str, dict[str, str]]:
    """Open the sign-in page an authorization request leads to; return its HTML and form."""
    relying = register_app(app, public=True, first_party=True)
    to_sign_in = start(browser, authorize_params(relying, pkce()[1], **query))
    page = browser.get(to_sign_in.headers["Location"])
    assert page.status_code == 200
    form = {"csrf_token": csrf_token(page.text), "interaction": hidden(page.text, "interaction")}
    return page.text, form


def consent_page(browser: FlaskClient, app: Flask, email: str) -> tuple[str, dict[str, str]]:
    relying = register_app(app, public=True)
    signed_in = sign_in(
        browser, start(browser, authorize_params(relying, pkce()[1])).headers["Location"], email
    )
    to_consent = browser.get(signed_in.headers["Location"])
    page = browser.get(to_consent.headers["Location"])
    assert page.status_code == 200
    form = {
        "csrf_token": csrf_token(page.text),
        "interaction": hidden(page.text, "interaction"),
        "account": hidden(page.text, "account"),
    }
    return page.text, form


def logout_page(browser: FlaskClient, app: Flask, email: str) -> tuple[str, dict[str, str]]:
    relying = register_app(app, public=True, first_party=True)
    code_through_browser(browser, relying, email, pkce()[1])
    page = browser.get(
        "/oauth/logout",
        query_string={"client_id": relying.client_id, "post_logout_redirect_uri": LOGOUT_URI},
    )
    assert page.status_code == 200
    return page.text, {"csrf_token": csrf_token(page.text), "logout": hidden(page.text, "logout")}


def session_cookies(response: Any) -> list[str]:
    return [c for c in response.headers.getlist("Set-Cookie") if COOKIE in c.split("=", 1)[0]]


def signed_in(browser: FlaskClient, app: Flask) -> bool:
    """Whether the browser's session cookie still signs it in (prompt=none gets a code)."""
    relying = register_app(app, public=True, first_party=True)
    answer = start(browser, authorize_params(relying, pkce()[1], prompt="none"))
    return "code" in query_of(answer.headers["Location"])


# CSRF ----------------------------------------------------------------------------------------


def test_sign_in_without_a_csrf_token_is_refused_and_starts_no_session(browser, app, email):
    _, form = sign_in_page(browser, app)
    del form["csrf_token"]
    response = browser.post(
        "/signin", data={**form, "email": email, "password": PASSWORD}, headers=ORIGIN
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert session_cookies(response) == []
    assert browser.get_cookie(COOKIE) is None


def test_sign_in_with_another_browsers_csrf_token_is_refused(browser, app, email):
    # The token is bound to the browser that got the page (its signed CSRF cookie).
    _, form = sign_in_page(app.test_client(), app)
    sign_in_page(browser, app)
    response = browser.post(
        "/signin", data={**form, "email": email, "password": PASSWORD}, headers=ORIGIN
    )
    assert response.status_code == 400
    assert session_cookies(response) == []


def test_sign_in_with_a_forged_csrf_token_is_refused(browser, app, email):
    _, form = sign_in_page(browser, app)
    form["csrf_token"] = form["csrf_token"][:-4] + "AAAA"
    response = browser.post(
        "/signin", data={**form, "email": email, "password": PASSWORD}, headers=ORIGIN
    )
    assert response.status_code == 400
    assert session_cookies(response) == []


def test_consent_without_a_csrf_token_is_refused_and_remembers_nothing(browser, app, email):
    _, form = consent_page(browser, app, email)
    del form["csrf_token"]
    response = browser.post("/consent", data={**form, "approve": "Allow"}, headers=ORIGIN)
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_logout_without_a_csrf_token_is_refused_and_ends_nothing(browser, app, email):
    _, form = logout_page(browser, app, email)
    del form["csrf_token"]
    response = browser.post("/oauth/logout", data=form, headers=ORIGIN)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert session_cookies(response) == []
    assert signed_in(browser, app)


# Origin --------------------------------------------------------------------------------------

CROSS_SITE = [
    {"Origin": EVIL_ORIGIN},
    {"Origin": "null"},
    {},
    {"Referer": f"{EVIL_ORIGIN}/page"},
    {"Origin": "null", "Referer": f"{EVIL_ORIGIN}/page"},
    {"Origin": "http://idp.test.evil.example"},
    {"Origin": "http://evil.idp.test"},
    {"Origin": "https://idp.test"},
    {"Origin": "http://idp.test:8080"},
    {"Origin": f"{EVIL_ORIGIN}", "Referer": f"{ISSUER}/signin"},
    {"Origin": ISSUER, "Sec-Fetch-Site": "cross-site"},
    {"Origin": ISSUER, "Sec-Fetch-Site": "same-site"},
    {"Referer": f"{ISSUER}/signin", "Sec-Fetch-Site": "cross-site"},
    {"Referer": "http://idp.test@evil.example/"},
    {"Referer": f"{EVIL_ORIGIN}/{ISSUER}/signin"},
    {"Referer": "/signin"},
]
CROSS_SITE_IDS = [
    "foreign",
    "null",
    "none",
    "foreign-referer",
    "null-foreign-referer",
    "suffix",
    "subdomain",
    "other-scheme",
    "other-port",
    "foreign-own-referer",
    "fetch-cross-site",
    "fetch-same-site",
    "referer-fetch-cross-site",
    "referer-userinfo",
    "referer-path",
    "referer-relative",
]


@pytest.mark.parametrize("headers", CROSS_SITE, ids=CROSS_SITE_IDS)
def test_a_cross_site_sign_in_is_refused(browser, app, email, headers):
    _, form = sign_in_page(browser, app)
    response = browser.post(
        "/signin", data={**form, "email": email, "password": PASSWORD}, headers=headers
    )
    assert response.status_code == 403
    assert "Location" not in response.headers
    assert session_cookies(response) == []
    assert browser.get_cookie(COOKIE) is None


@pytest.mark.parametrize("headers", CROSS_SITE, ids=CROSS_SITE_IDS)
def test_a_cross_site_consent_is_refused(browser, app, email, headers):
    _, form = consent_page(browser, app, email)
    response = browser.post("/consent", data={**form, "approve": "Allow"}, headers=headers)
    assert response.status_code == 403
    assert "Location" not in response.headers


@pytest.mark.parametrize("headers", CROSS_SITE, ids=CROSS_SITE_IDS)
def test_a_cross_site_logout_is_refused(browser, app, email, headers):
    _, form = logout_page(browser, app, email)
    response = browser.post("/oauth/logout", data=form, headers=headers)
    assert response.status_code == 403
    assert session_cookies(response) == []
    assert signed_in(browser, app)


@pytest.mark.parametrize(
    "headers",
    [
        ORIGIN,
        {"Referer": f"{ISSUER}/signin?x=1"},
        {"Origin": "null", "Referer": f"{ISSUER}/signin"},
        {"Origin": ISSUER, "Sec-Fetch-Site": "same-origin"},
        {"Origin": ISSUER, "Sec-Fetch-Site": "none"},
    ],
    ids=["origin", "referer", "null-own-referer", "fetch-same-origin", "fetch-none"],
)
def test_a_same_origin_sign_in_is_accepted(browser, app, email, headers):
    _, form = sign_in_page(browser, app)
    response = browser.post(
        "/signin", data={**form, "email": email, "password": PASSWORD}, headers=headers
    )
    assert response.status_code == 303, response.text
    assert len(session_cookies(response)) == 1


# Headers -------------------------------------------------------------------------------------


def pages_to_check(browser: FlaskClient, app: Flask, email: str) -> dict[str, Any]:
    relying = register_app(app, public=True)
    params = authorize_params(relying, pkce()[1])
    pages: dict[str, Any] = {"authorize": start(browser, params)}
    pages["sign-in"] = browser.get(pages["authorize"].headers["Location"])
    pages["bad-sign-in"] = browser.post(
        "/signin",
        data={
            "csrf_token": csrf_token(pages["sign-in"].text),
            "email": email,
            "password": "wrong",
        },
        headers=ORIGIN,
    )
    pages["error"] = start(browser, {**params, "client_id": "nobody"})
    pages["cross-site"] = browser.post("/signin", data={}, headers={"Origin": EVIL_ORIGIN})
    pages["signed-in-redirect"] = sign_in(browser, pages["authorize"].headers["Location"], email)
    pages["continue"] = browser.get(pages["signed-in-redirect"].headers["Location"])
    pages["consent"] = browser.get(pages["continue"].headers["Location"])
    pages["signed-in"] = browser.get("/signed-in")
    pages["logout"] = browser.get("/oauth/logout")
    return pages


def test_every_page_forbids_scripts_framing_and_caching(browser, app, email):
    for name, response in pages_to_check(browser, app, email).items():
        csp = response.headers["Content-Security-Policy"]
        directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
        assert directives.get("default-src") == ["'none'"], (name, csp)
        assert "script-src" not in directives, (name, csp)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, (name, csp)
        assert directives.get("frame-ancestors") == ["'none'"], (name, csp)
        assert directives.get("base-uri") == ["'none'"], (name, csp)
        assert response.headers["X-Frame-Options"] == "DENY", name
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
        assert "no-store" in response.headers["Cache-Control"], name
        if response.status_code == 200 or response.mimetype == "text/html":
            assert "<script" not in response.text.lower(), name


def test_the_session_cookie_is_httponly_and_lax(browser, app, email):
    _, form = sign_in_page(browser, app)
    response = browser.post(
        "/signin", data={**form, "email": email, "password": PASSWORD}, headers=ORIGIN
    )
    (cookie,) = session_cookies(response)
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert cookie.startswith(f"{COOKIE}=")
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    assert not any(part.startswith("domain=") for part in attributes)
    assert "secure" not in attributes  # an http issuer: a Secure cookie would never come back
    stored = browser.get_cookie(COOKIE)
    assert len(stored.value) >= 32


def test_with_an_https_issuer_the_cookies_are_secure_and_host_only(make_app, mailbox):
    app = make_app(IDP_ISSUER="https://idp.test")
    origin = {"Origin": "https://idp.test"}
    browser = app.test_client()
    address = unique_email("secure")
    register_and_verify(app.test_client(), mailbox, address)
    relying = register_app(app, public=True, first_party=True)
    _, challenge = pkce()
    params = authorize_params(relying, challenge)
    to_sign_in = browser.get(f"/oauth/authorize?{urlencode(params)}", base_url="https://idp.test")
    page = browser.get(to_sign_in.headers["Location"], base_url="https://idp.test")
    assert page.headers.getlist("Set-Cookie")
    for cookie in page.headers.getlist("Set-Cookie"):  # the CSRF cookie
        assert cookie.startswith("__Host-"), cookie
        assert "Secure" in cookie and "Domain" not in cookie, cookie
    form = {
        "csrf_token": csrf_token(page.text),
        "interaction": hidden(page.text, "interaction"),
        "email": address,
        "password": PASSWORD,
    }
    response = browser.post("/signin", data=form, headers=origin, base_url="https://idp.test")
    assert response.status_code == 303, response.text
    (cookie,) = [c for c in response.headers.getlist("Set-Cookie") if "idp_session=" in c]
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert cookie.startswith("__Host-idp_session=")
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= set(attributes)
    assert not any(part.startswith("domain=") for part in attributes)
    # The plain name means nothing to an https idp: a sibling could have planted it.
    planted = app.test_client()
    real = browser.get_cookie("__Host-idp_session", domain="idp.test")
    planted.set_cookie(COOKIE, real.value, domain="idp.test")
    answer = planted.get(
        f"/oauth/authorize?{urlencode({**params, 'prompt': 'none'})}", base_url="https://idp.test"
    )
    assert query_of(answer.headers["Location"])["error"] == "login_required"
    # The real one works, and logging out clears it under its own name.
    answer = browser.get(response.headers["Location"], base_url="https://idp.test")
    assert "code" in query_of(answer.headers["Location"])
    out = browser.get("/oauth/logout", base_url="https://idp.test")
    done = browser.post(
        "/oauth/logout",
        data={"csrf_token": csrf_token(out.text), "logout": hidden(out.text, "logout")},
        headers=origin,
        base_url="https://idp.test",
    )
    assert done.status_code == 200
    cleared = [c for c in done.headers.getlist("Set-Cookie") if "idp_session=" in c]
    assert cleared and cleared[0].startswith("__Host-idp_session=;"), cleared
    assert "Secure" in cleared[0]


# Session fixation ----------------------------------------------------------------------------


def test_every_sign_in_gets_a_new_cookie_and_the_old_one_dies(browser, app, email):
    relying = register_app(app, public=True, first_party=True)
    code_through_browser(browser, relying, email, pkce()[1])
    first = browser.get_cookie(COOKIE).value
    again = start(browser, authorize_params(relying, pkce()[1], prompt="login"))
    signed = sign_in(browser, again.headers["Location"], email)
    second = browser.get_cookie(COOKIE).value
    assert second != first
    assert session_cookies(signed) and second in session_cookies(signed)[0]
    stale = app.test_client()
    stale.set_cookie(COOKIE, first)
    assert not signed_in(stale, app)
    assert signed_in(browser, app)


def test_a_planted_cookie_is_replaced_at_sign_in(browser, app, email):
    # An attacker who set the victim's cookie (a sibling domain, an http page) gains nothing.
    planted = "A" * 43
    browser.set_cookie(COOKIE, planted)
    relying = register_app(app, public=True, first_party=True)
    code_through_browser(browser, relying, email, pkce()[1])
    assert browser.get_cookie(COOKIE).value != planted
    attacker = app.test_client()
    attacker.set_cookie(COOKIE, planted)
    assert not signed_in(attacker, app)


@pytest.mark.parametrize(
    "value", ["", "x", "A" * 43, "A" * 65, "' OR 1=1 --", "\u00e9" * 10], ids=str
)
def test_a_made_up_cookie_signs_nobody_in(browser, app, value):
    browser.set_cookie(COOKIE, value)
    assert not signed_in(browser, app)


# The sign-in page ----------------------------------------------------------------------------


def test_login_hint_fills_in_the_email(browser, app, email):
    html, _ = sign_in_page(browser, app, login_hint=email)
    assert f'value="{email}"' in html


@pytest.mark.parametrize(
    "hint",
    [
        '"><script>alert(1)</script>',
        "' autofocus onfocus='alert(1)",
        "</form><form action=https://evil.example/>",
    ],
    ids=["double-quote", "single-quote", "form"],
)
def test_login_hint_is_escaped(browser, app, hint):
    html, _ = sign_in_page(browser, app, login_hint=hint)
    assert hint not in html
    assert "<script>" not in html
    assert "onfocus='" not in html
    assert "evil.example/>" not in html
    assert html.count("<form") == 1


@pytest.mark.parametrize("path", ["/signin", "/signin?login_hint=%22%3E%3Cscript%3E"])
def test_login_hint_on_the_page_itself_is_escaped(browser, path):
    response = browser.get(path)
    assert response.status_code == 200
    assert "<script>" not in response.text


def test_a_wrong_password_starts_no_session_and_says_nothing_specific(browser, app, email):
    answers = []
    for address, password in ((email, "Wrong-Horse-7"), (unique_email("nobody"), PASSWORD)):
        _, form = sign_in_page(browser, app)
        response = browser.post(
            "/signin", data={**form, "email": address, "password": password}, headers=ORIGIN
        )
        assert response.status_code in (400, 401)  # the form again
        assert session_cookies(response) == []
        assert password not in response.text
        answers.append(response.text.replace(address, "ADDRESS"))
    assert (
        answers[0].split('id="form-error">')[1][:80]
        == (answers[1].split('id="form-error">')[1][:80])
    )
    assert browser.get_cookie(COOKIE) is None


def test_the_sign_in_page_never_echoes_the_password(browser, app, email):
    _, form = sign_in_page(browser, app)
    response = browser.post(
        "/signin", data={**form, "email": email, "password": "Secret-Guess-99"}, headers=ORIGIN
    )
    assert "Secret-Guess-99" not in response.text


# Interactions --------------------------------------------------------------------------------


def old_interaction(app: Flask, params: dict[str, str], age: int) -> str:
    """An interaction as idp itself issued it `age` seconds ago."""
    # Imported here: idp.oauth.authorize cannot be the first of idp's modules a process loads
    # (it imports idp.pages.render, whose package imports idp.oauth.browser_views, which
    # imports idp.oauth.authorize before it is done).
    from idp.oauth.authorize import INTERACTION_SALT

    class SignedThen(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(utcnow().timestamp()) - age

    class Then(URLSafeTimedSerializer):
        default_signer = SignedThen

    with app.app_context():
        return Then(app.config["SECRET_KEY"], salt=INTERACTION_SALT).dumps(
            {"p": params, "t": (utcnow() - timedelta(seconds=age)).timestamp()}
        )


@pytest.mark.parametrize("path", ["/oauth/authorize/continue", "/consent"])
def test_an_expired_interaction_gets_idps_page(browser, app, email, path):
    relying = register_app(app, public=True)
    code_through_browser(browser, relying, email, pkce()[1])
    params = authorize_params(relying, pkce()[1], prompt="consent")
    fresh = old_interaction(app, params, 60)
    assert browser.get(f"{path}?{urlencode({'interaction': fresh})}").status_code in (200, 303)
    stale = old_interaction(app, params, 15 * 60 + 5)  # idp.oauth.authorize.INTERACTION_MAX_AGE
    response = browser.get(f"{path}?{urlencode({'interaction': stale})}")
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_consent_without_a_session_gets_idps_page(browser, app, email):
    _, form = consent_page(browser, app, email)
    stranger = app.test_client()
    page = stranger.get(f"/consent?{urlencode({'interaction': form['interaction']})}")
    assert page.status_code == 400
    assert "Location" not in page.headers


def test_consent_needs_the_interaction(browser, app, email):
    _, form = consent_page(browser, app, email)
    response = browser.post(
        "/consent",
        data={"csrf_token": form["csrf_token"], "approve": "Allow"},
        headers=ORIGIN,
    )
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_the_sign_out_form_cannot_be_pointed_elsewhere(browser, app, email):
    _, form = logout_page(browser, app, email)
    form["logout"] = tampered(
        form["logout"], lambda data: data.update(post_logout_redirect_uri="https://evil.example/")
    )
    response = browser.post("/oauth/logout", data=form, headers=ORIGIN)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert signed_in(browser, app)


@pytest.mark.parametrize(
    "state",
    ["a\r\nSet-Cookie: x=1", "<script>", "a b&c=d#e"],
    ids=["crlf", "html", "separators"],
)
def test_the_logout_state_is_sent_back_encoded(client, browser, app, email, state):
    relying = register_app(app, public=True, first_party=True)
    verifier, challenge = pkce()
    code, _ = code_through_browser(browser, relying, email, challenge)
    id_token = redeem(client, relying, code, verifier).json["id_token"]
    response = browser.get(
        "/oauth/logout",
        query_string={
            "id_token_hint": id_token,
            "post_logout_redirect_uri": LOGOUT_URI,
            "state": state,
        },
    )
    if "\r" in state:
        # Not printable ASCII, as OAuth parameters are: refused on idp's page, sent nowhere.
        assert response.status_code == 400
        assert "Location" not in response.headers
        return
    assert response.status_code == 303
    location = response.headers["Location"]
    assert urlsplit(location)._replace(query="").geturl() == LOGOUT_URI
    assert query_of(location) == {"state": state}
    assert "\r" not in location and "\n" not in location


def test_a_consent_page_shown_for_one_account_grants_nothing_once_another_signed_in(
    browser, app, client, mailbox, email
):
    """Another tab, a shared device: the page said "Signed in as A"; B signed in since. Allow
    must not approve the app for B, whom the page never showed."""
    _, form = consent_page(browser, app, email)
    other = unique_email("pages-other")
    register_and_verify(client, mailbox, other)
    relying = register_app(app, public=True, first_party=True)
    to_sign_in = start(browser, authorize_params(relying, pkce()[1], prompt="login"))
    assert sign_in(browser, to_sign_in.headers["Location"], other).status_code == 303
    response = browser.post("/consent", data={**form, "approve": "Allow"}, headers=ORIGIN)
    assert response.status_code == 400
    assert "Location" not in response.headers
    # Nothing was remembered for the account now signed in: the same request asks it again.
    again = browser.get(
        f"/oauth/authorize/continue?{urlencode({'interaction': form['interaction']})}"
    )
    assert again.status_code == 303, again.text
    assert urlsplit(again.headers["Location"]).path == "/consent"


@pytest.mark.parametrize("extra", [{}, {"approve": ""}, {"deny": ""}])
def test_a_consent_post_with_neither_button_grants_nothing(browser, app, email, extra):
    _, form = consent_page(browser, app, email)
    response = browser.post("/consent", data={**form, **extra}, headers=ORIGIN)
    assert response.status_code == 400
    assert "Location" not in response.headers


@pytest.mark.parametrize(
    ("address", "password"),
    [
        ("ada\x00@example.com", "Wrong-Horse-7"),
        ("ada@exam\x00ple.com", "Wrong-Horse-7"),
        ("ada\x07@example.com", "Wrong-Horse-7"),
        (None, "Correct\x00Horse-7"),
    ],
)
def test_control_characters_in_the_sign_in_form_are_refused_as_a_wrong_password(
    browser, app, email, address, password
):
    """Refused before any look-up (PostgreSQL cannot even hold a NUL), with the answer a wrong
    password gets: never a 500."""
    _, form = sign_in_page(browser, app)
    response = browser.post(
        "/signin",
        data={**form, "email": address or email, "password": password},
        headers=ORIGIN,
    )
    assert response.status_code == 400
    assert "Invalid email or password." in response.text
    assert session_cookies(response) == []
