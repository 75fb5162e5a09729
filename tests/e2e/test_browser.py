"""A real browser (Debian's chromium, driven by Playwright) through the hosted pages.

A user starts at a relying app (tests/e2e/relying_app.py), signs in on idp's page, allows the
app, and lands back on it with a code; a first-party app then signs in without asking; sign-out
through the end_session_endpoint returns to the app. Every hosted page passed through is
screenshotted at desktop and phone width (into $IDP_SCREENSHOTS, or
tests/e2e/artifacts/screenshots/) and checked for the basics of accessibility: a language, a
label for every input, errors announced and tied to their field, no sideways scrolling on a
phone, and no Content-Security-Policy violation in the console.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.e2e.conftest import REQUEST_TIMEOUT, ROOT, Gunicorn
from tests.e2e.relying_app import RelyingApp
from tests.flows import PASSWORD

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"  # Debian's package; .ci/run installs it. Never a download.
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}
SCREENSHOTS = Path(os.environ.get("IDP_SCREENSHOTS") or ROOT / "tests/e2e/artifacts/screenshots")
SCOPE = "openid profile email"


# -- the browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def console() -> list[str]:
    """Every console message of the test's browser context."""
    return []


@pytest.fixture
def page(chromium: Browser, console: list[str]) -> Iterator[Page]:
    """A new browser profile (no cookies) with one tab, at desktop size."""
    context: BrowserContext = chromium.new_context(viewport=DESKTOP, locale="en-US")
    context.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    yield context.new_page()
    context.close()


def csp_violations(console: list[str]) -> list[str]:
    return [line for line in console if "Content Security Policy" in line]


def check_page(page: Page, name: str, console: list[str]) -> None:
    """Screenshot a hosted page at desktop and phone width, and check what every page owes
    its users: a language, a mobile viewport, its stylesheet, named inputs and buttons, no
    sideways scrolling on a phone, nothing refused by the CSP."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert page.get_attribute("html", "lang"), "<html> has no lang"
    viewport = page.get_attribute('meta[name="viewport"]', "content") or ""
    assert "width=device-width" in viewport, viewport
    # The stylesheet applied (the CSP let it through): the page's background is ours.
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(243, 245, 248)", background
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
              .filter(el => !['hidden', 'submit'].includes(el.type))
              .filter(el => el.labels.length === 0 && !el.getAttribute('aria-label'))
              .map(el => el.outerHTML)"""
    )
    assert unnamed == [], unnamed
    for button in page.get_by_role("button").all():
        expect(button).to_have_accessible_name(re.compile(r"\S"))
    page.screenshot(path=SCREENSHOTS / f"{name}-desktop.png", full_page=True)
    page.set_viewport_size(PHONE)
    try:
        page.screenshot(path=SCREENSHOTS / f"{name}-phone.png", full_page=True)
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= PHONE["width"], f"{name} scrolls sideways at 375 px: {scroll_width}"
    finally:
        page.set_viewport_size(DESKTOP)
    assert csp_violations(console) == []


# -- the apps --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def discovery(server: Gunicorn) -> dict[str, Any]:
    response = requests.get(
        f"{server.url}/.well-known/openid-configuration", timeout=REQUEST_TIMEOUT
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def make_app(
    server: Gunicorn,
    discovery: dict[str, Any],
    new_oidc_client: Callable[..., dict[str, str]],
) -> Iterator[Callable[..., RelyingApp]]:
    """Start a relying app and register it (confidential, with a sign-out return address)."""
    apps: list[RelyingApp] = []

    def make(name: str, *options: str) -> RelyingApp:
        app = RelyingApp(discovery["authorization_endpoint"], SCOPE)
        apps.append(app)
        created = new_oidc_client(
            server,
            name,
            "--confidential",
            "--redirect-uri",
            app.redirect_uri,
            "--post-logout-redirect-uri",
            app.signed_out_uri,
            "--scope",
            SCOPE,
            *options,
        )
        app.client_id, app.client_secret = created["client_id"], created["client_secret"]
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture(scope="module")
def notes(make_app: Callable[..., RelyingApp]) -> RelyingApp:
    """Someone else's app: the user is asked before it sees anything."""
    return make_app("Acme Notes")


@pytest.fixture(scope="module")
def own_console(make_app: Callable[..., RelyingApp]) -> RelyingApp:
    """The admin's own app, flagged first-party: no consent page."""
    return make_app("Acme Console", "--first-party")


def redeem(discovery: dict[str, Any], app: RelyingApp, callback: dict[str, str]) -> dict[str, Any]:
    """What the app's back end does with /cb's code; returns the checked ID token's claims."""
    assert "error" not in callback, callback
    assert callback["iss"] == discovery["issuer"]  # RFC 9207: the answer is from our issuer
    login = app.logins[callback["state"]]  # the state is one the app sent, so this is its answer
    assert app.client_secret is not None
    response = requests.post(
        discovery["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": callback["code"],
            "redirect_uri": app.redirect_uri,
            "code_verifier": login.code_verifier,
        },
        auth=(app.client_id, app.client_secret),
        timeout=REQUEST_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    token = response.json()
    keys = jwt.PyJWKClient(discovery["jwks_uri"], cache_jwk_set=False)
    claims = jwt.decode(
        token["id_token"],
        keys.get_signing_key_from_jwt(token["id_token"]).key,
        algorithms=["RS256"],
        audience=app.client_id,
        issuer=discovery["issuer"],
        options={"require": ["exp", "iat", "sub", "nonce", "sid", "at_hash"]},
    )
    assert claims["nonce"] == login.nonce
    return {**claims, "id_token": token["id_token"]}


def url_of(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}(\?.*)?$")


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


# -- the journeys ----------------------------------------------------------------------------------


def test_sign_in_consent_single_sign_on_and_sign_out(
    server, discovery, page, console, notes, own_console, new_verified_user
):
    email, user_id = new_verified_user(server)
    visited: list[str] = []
    page.on("request", lambda request: visited.append(request.url))

    # The app sends the browser to idp, which asks the user to sign in.
    page.goto(f"{notes.url}/login")
    expect(page).to_have_url(url_of(f"{server.url}/signin"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    check_page(page, "sign-in", console)

    # A wrong password: the error is announced; the address stays, the password does not.
    sign_in(page, email, "Wrong-Horse-0")
    expect(page.get_by_role("alert")).to_have_text("Invalid email or password.")
    expect(page.get_by_label("Email")).to_have_value(email)
    expect(page.get_by_label("Password")).to_have_value("")
    check_page(page, "sign-in-error", console)

    # The right one: the consent page names the app and what it will see.
    sign_in(page, email)
    expect(page).to_have_url(url_of(f"{server.url}/consent"))
    expect(page.get_by_role("heading")).to_contain_text("Acme Notes")
    expect(page.get_by_role("listitem")).to_have_count(len(SCOPE.split()))
    check_page(page, "consent", console)

    # Allow: back at the app with a code, its own state, and our issuer.
    page.get_by_role("button", name="Allow").click()
    expect(page).to_have_url(url_of(notes.redirect_uri))
    expect(page.get_by_role("heading")).to_have_text("Signed in")
    assert len(notes.callbacks) == 1
    claims = redeem(discovery, notes, notes.callbacks[-1])
    assert claims["sub"] == user_id
    assert claims["email"] == email

    # Single sign-on: the first-party app gets its code without any idp page at all.
    before = len(visited)
    page.goto(f"{own_console.url}/login")
    expect(page).to_have_url(url_of(own_console.redirect_uri))
    expect(page.get_by_role("heading")).to_have_text("Signed in")
    shown = [urlsplit(url).path for url in visited[before:] if url.startswith(server.url)]
    assert shown == ["/oauth/authorize"], shown
    own_claims = redeem(discovery, own_console, own_console.callbacks[-1])
    assert own_claims["sub"] == user_id
    assert own_claims["sid"] == claims["sid"]

    # The signed-in page idp shows when no app is waiting.
    page.goto(f"{server.url}/signed-in")
    expect(page.get_by_role("heading")).to_have_text("You are signed in")
    check_page(page, "signed-in", console)

    # Sign-out from the app, with its ID token as the hint: no question, back at the app.
    logout = {
        "id_token_hint": claims["id_token"],
        "post_logout_redirect_uri": notes.signed_out_uri,
        "state": "bye",
    }
    page.goto(f"{discovery['end_session_endpoint']}?{urlencode(logout)}")
    expect(page).to_have_url(f"{notes.signed_out_uri}?state=bye")
    expect(page.get_by_role("heading")).to_have_text("Signed out")

    # Signed out everywhere: both apps now meet the sign-in page.
    for app in (notes, own_console):
        page.goto(f"{app.url}/login")
        expect(page).to_have_url(url_of(f"{server.url}/signin"))

    # Sign in again (for the first-party app: nothing to allow), then sign out on idp's page.
    sign_in(page, email)
    expect(page).to_have_url(url_of(own_console.redirect_uri))
    page.goto(discovery["end_session_endpoint"])
    expect(page.get_by_role("heading")).to_have_text("Sign out?")
    expect(page.get_by_text(email)).to_be_visible()
    check_page(page, "sign-out", console)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading")).to_have_text("You are signed out")
    check_page(page, "signed-out", console)
    page.goto(f"{server.url}/signed-in")
    expect(page).to_have_url(url_of(f"{server.url}/signin"))

    assert csp_violations(console) == []
    assert "Traceback" not in server.error_log.read_text()


def test_an_unknown_client_gets_the_error_page_and_nothing_is_sent(
    server, discovery, page, console, notes
):
    callbacks = len(notes.callbacks)
    request = {
        "response_type": "code",
        "client_id": "no-such-client",
        "redirect_uri": notes.redirect_uri,
        "scope": SCOPE,
        "state": "s",
    }
    response = page.goto(f"{discovery['authorization_endpoint']}?{urlencode(request)}")
    assert response is not None and response.status == 400
    expect(page).to_have_url(url_of(discovery["authorization_endpoint"]))
    expect(page.get_by_role("heading")).to_have_text("Something went wrong")
    expect(page.get_by_role("alert")).to_be_visible()
    check_page(page, "error", console)
    assert len(notes.callbacks) == callbacks


def test_missing_fields_are_announced_and_tied_to_their_inputs(server, notes, page, console):
    page.goto(f"{notes.url}/login")
    expect(page).to_have_url(url_of(f"{server.url}/signin"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    for label in ("Email", "Password"):
        field = page.get_by_label(label)
        expect(field).to_have_attribute("aria-invalid", "true")
        described_by = field.get_attribute("aria-describedby") or ""
        assert described_by, f"{label}: no aria-describedby"
        for error_id in described_by.split():
            expect(page.locator(f"#{error_id}")).to_have_text(re.compile(r"\w"))
        expect(field).to_have_accessible_description(re.compile(r"\w"))
    # Announced: a page rendered after a submit says so through an alert.
    expect(page.get_by_role("alert")).not_to_have_count(0)
    assert csp_violations(console) == []


def test_a_long_address_fits_on_a_phone(server, notes, page, new_verified_user):
    email, _ = new_verified_user(
        server, f"alexandra.montgomery.{uuid.uuid4().hex[:12]}@example.com"
    )
    page.set_viewport_size(PHONE)
    page.goto(f"{notes.url}/login")
    sign_in(page, email)
    expect(page).to_have_url(url_of(f"{server.url}/consent"))
    widths = {}
    for name, url in (
        ("consent", page.url),
        ("signed-in", f"{server.url}/signed-in"),
        ("sign-out", f"{server.url}/oauth/logout"),
    ):
        page.goto(url)
        expect(page.get_by_text(email)).to_be_visible()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"{name}-long-address-phone.png", full_page=True)
        widths[name] = page.evaluate("document.documentElement.scrollWidth")
    assert all(width <= PHONE["width"] for width in widths.values()), widths
