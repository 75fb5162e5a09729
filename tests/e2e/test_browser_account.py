"""A brand-new user in a real browser: sign-up, the mailed links, sign-in, a forgotten password.

The server runs with IDP_FRONTEND_URL empty, so its mails link to its own hosted pages
(<issuer>/verify-email, <issuer>/reset-password), and the user follows them in the same browser:
from a relying app's /login to "Create an account" (the pending request kept), a refused and then
an accepted password, the verification link (opening it alone confirms nothing; its button
does), back to the app through sign-in and consent, then "Forgot your password?" to a new
password that ends the browser's session, and finally a used link that no longer works.

The browser, the screenshots and the accessibility checks are test_browser.py's (imported):
every page passed through is screenshotted at desktop and phone width and checked the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.e2e import test_browser as browser
from tests.e2e.api import unique_email
from tests.e2e.conftest import REQUEST_TIMEOUT, Gunicorn
from tests.e2e.relying_app import RelyingApp
from tests.e2e.test_browser import SCOPE, check_page, csp_violations, redeem, sign_in, url_of
from tests.flows import PASSWORD
from tests.support import Mailbox, ReceivedMail

pytestmark = pytest.mark.e2e

# test_browser.py's fixtures: Debian's chromium, a fresh profile per test, its console lines.
chromium = browser.chromium
console = browser.console
page = browser.page

TOO_SHORT = "Sh0rt-A"  # 7 characters: the policy wants 8
NEW_PASSWORD = "Battery-Staple-9"
LATER_PASSWORD = "Another-Good-4"  # tried on a used reset link: never set
WEAK = "alllowercase"  # long enough, but no capital and no digit
LINK = re.compile(r"https?://[^\s<>\"']+")
HREF = re.compile(r'href="([^"]+)"')


# -- the server and the app ------------------------------------------------------------------------


@pytest.fixture
def idp(launch: Callable[..., Gunicorn]) -> Gunicorn:
    """A server of this test's own whose mails link to the issuer's pages (no front end)."""
    return launch(IDP_FRONTEND_URL="")


@pytest.fixture
def issuer_discovery(idp: Gunicorn) -> dict[str, Any]:
    response = requests.get(f"{idp.url}/.well-known/openid-configuration", timeout=REQUEST_TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.json()["issuer"] == idp.url
    return response.json()


@pytest.fixture
def notes(
    idp: Gunicorn,
    issuer_discovery: dict[str, Any],
    new_oidc_client: Callable[..., dict[str, str]],
) -> Iterator[RelyingApp]:
    """Someone else's app (consent asked), registered by the admin as in test_browser.py."""
    app = RelyingApp(issuer_discovery["authorization_endpoint"], SCOPE)
    try:
        created = new_oidc_client(
            idp,
            "Acme Notes",
            "--confidential",
            "--redirect-uri",
            app.redirect_uri,
            "--post-logout-redirect-uri",
            app.signed_out_uri,
            "--scope",
            SCOPE,
        )
        app.client_id, app.client_secret = created["client_id"], created["client_secret"]
        yield app
    finally:
        app.close()


# -- helpers ---------------------------------------------------------------------------------------


def links_on_issuer(mail: ReceivedMail, issuer: str) -> list[str]:
    """The mail's links; the text and HTML parts hold the same ones, all on the issuer's pages."""
    text_links = LINK.findall(mail.text)
    html_links = [unescape(href) for href in HREF.findall(mail.part("text/html"))]
    assert text_links, mail.text
    assert set(text_links) == set(html_links), (text_links, html_links)
    assert all(link.startswith(f"{issuer}/") for link in text_links), text_links
    return text_links


def one_link(links: list[str], prefix: str) -> str:
    """The one link that starts with `prefix` and carries a token."""
    found = [link for link in links if link.startswith(f"{prefix}?token=")]
    assert len(found) == 1, (prefix, links)
    return found[0]


def query_param(url: str, name: str) -> str:
    values = parse_qs(urlsplit(url).query).get(name, [])
    assert len(values) == 1, (name, url)
    return values[0]


def api_login(server: Gunicorn, email: str, password: str) -> requests.Response:
    return requests.post(
        f"{server.url}/api/v1/auth/login/",
        json={"email": email, "password": password},
        timeout=REQUEST_TIMEOUT,
    )


def expect_field_error(page: Page, label: str, text: str | re.Pattern[str]) -> None:
    """The field is marked invalid, and its error is an alert the field is described by."""
    field = page.get_by_label(label, exact=True)
    expect(field).to_have_attribute("aria-invalid", "true")
    described_by = (field.get_attribute("aria-describedby") or "").split()
    alerts = [
        error_id
        for error_id in described_by
        if page.locator(f"#{error_id}").get_attribute("role") == "alert"
    ]
    assert len(alerts) == 1, (label, described_by)
    expect(page.locator(f"#{alerts[0]}")).to_have_text(text)
    contains = text if isinstance(text, re.Pattern) else re.compile(re.escape(text))
    expect(field).to_have_accessible_description(contains)
    expect(page.get_by_role("alert").filter(has_text=text)).to_have_count(1)


# -- the journey -----------------------------------------------------------------------------------


def test_a_new_user_signs_up_confirms_signs_in_and_resets_the_password(
    idp, issuer_discovery, notes, page, console, mailbox: Mailbox
):
    email = unique_email("newcomer")
    signin_url = f"{idp.url}/signin"

    # 1. The app sends the browser to idp's sign-in page; the user has no account yet.
    page.goto(f"{notes.url}/login")
    expect(page).to_have_url(url_of(signin_url))
    interaction = query_param(page.url, "interaction")
    create = page.get_by_role("link", name="Create an account")
    assert query_param(create.get_attribute("href") or "", "interaction") == interaction
    create.click()
    expect(page).to_have_url(url_of(f"{idp.url}/signup"))
    assert query_param(page.url, "interaction") == interaction
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()

    # A password that is too short: the field says so, the rest of the form is kept.
    page.get_by_label("Email").fill(email)
    page.get_by_label("First name").fill("Grace")
    page.get_by_label("Last name").fill("Hopper")
    page.get_by_label("Password").fill(TOO_SHORT)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    expect_field_error(page, "Password", "Password must be at least 8 characters long.")
    expect(page.get_by_label("Email")).to_have_value(email)
    expect(page.get_by_label("First name")).to_have_value("Grace")
    expect(page.get_by_label("Last name")).to_have_value("Hopper")
    expect(page.get_by_label("Password")).to_have_value("")
    expect(page.locator('input[name="interaction"]')).to_have_value(interaction)
    check_page(page, "sign-up-error", console)
    assert mailbox.to(email) == []

    # A good one: "check your mail", still carrying the app's pending request.
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(url_of(f"{idp.url}/signup/check-mail"))
    assert query_param(page.url, "interaction") == interaction
    expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()
    back = page.get_by_role("link", name="Sign in", exact=True)
    assert query_param(back.get_attribute("href") or "", "interaction") == interaction
    check_page(page, "check-mail", console)

    # 2. The mail links to the issuer's own pages (IDP_FRONTEND_URL is empty).
    verification = mailbox.wait_for(email)[-1]
    verify_link = one_link(links_on_issuer(verification, idp.url), f"{idp.url}/verify-email")

    # Not confirmed yet: the right password is refused for the unconfirmed address.
    refused = api_login(idp, email, PASSWORD)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "email_not_verified"

    # Opening the link shows a button and confirms nothing (a mail scanner's fetch is harmless).
    page.goto(verify_link)
    expect(page).to_have_url(verify_link)
    expect(page.get_by_role("heading", name="Confirm your email address")).to_be_visible()
    confirm = page.get_by_role("button", name="Confirm my email address")
    expect(confirm).to_be_visible()
    check_page(page, "verify-email", console)
    still_refused = api_login(idp, email, PASSWORD)
    assert still_refused.status_code == 403, still_refused.text
    assert still_refused.json()["code"] == "email_not_verified"

    # Pressing it does.
    confirm.click()
    expect(page.get_by_role("heading", name="Your email address is confirmed")).to_be_visible()
    check_page(page, "email-verified", console)
    assert api_login(idp, email, PASSWORD).status_code == 200

    # 3. Back to the app: sign in, allow, and the app has its answer from our issuer.
    page.goto(f"{notes.url}/login")
    expect(page).to_have_url(url_of(signin_url))
    sign_in(page, email)
    expect(page).to_have_url(url_of(f"{idp.url}/consent"))
    expect(page.get_by_role("heading")).to_contain_text("Acme Notes")
    page.get_by_role("button", name="Allow").click()
    expect(page).to_have_url(url_of(notes.redirect_uri))
    expect(page.get_by_role("heading")).to_have_text("Signed in")
    callback = notes.callbacks[-1]
    assert {"code", "state", "iss"} <= callback.keys(), callback
    claims = redeem(issuer_discovery, notes, callback)
    assert claims["email"] == email
    assert claims["email_verified"] is True
    assert (claims["given_name"], claims["family_name"]) == ("Grace", "Hopper")
    user_id = claims["sub"]

    # 4. A forgotten password, from the sign-in page.
    page.goto(signin_url)
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page).to_have_url(url_of(f"{idp.url}/forgot-password"))
    expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    check_page(page, "forgot-password", console)
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()
    expect(page.get_by_text("If the address belongs to an account")).to_be_visible()
    check_page(page, "reset-requested", console)

    reset_mail = mailbox.wait_for(email, count=2)[-1]
    reset_link = one_link(links_on_issuer(reset_mail, idp.url), f"{idp.url}/reset-password")
    page.goto(reset_link)
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    check_page(page, "reset-password", console)

    # A weak password is refused at its field; the link still works for a better one.
    page.get_by_label("New password").fill(WEAK)
    page.get_by_role("button", name="Set new password").click()
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    expect_field_error(page, "New password", re.compile("uppercase letter"))
    expect(page.get_by_label("New password")).to_have_value("")
    check_page(page, "reset-password-error", console)

    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set new password").click()
    expect(page.get_by_role("heading", name="Your password is changed")).to_be_visible()
    check_page(page, "password-changed", console)

    # The browser's session ended with it: the app meets the sign-in page again.
    page.goto(f"{idp.url}/signed-in")
    expect(page).to_have_url(url_of(signin_url))
    page.goto(f"{notes.url}/login")
    expect(page).to_have_url(url_of(signin_url))
    sign_in(page, email)  # the old password
    expect(page.get_by_role("alert")).to_have_text("Invalid email or password.")
    sign_in(page, email, NEW_PASSWORD)
    # Allowed already: no consent page this time.
    expect(page).to_have_url(url_of(notes.redirect_uri))
    again = redeem(issuer_discovery, notes, notes.callbacks[-1])
    assert again["sub"] == user_id
    assert again["sid"] != claims["sid"]

    # 5. A used link says so as soon as it is opened (nothing to press, nothing to type): the
    # verification link, which points a confirmed user to sign in, then the reset link.
    page.goto(verify_link)
    expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("simply sign in")
    check_page(page, "link-invalid", console)

    page.goto(reset_link)
    expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()
    expect(page.get_by_label("New password")).to_have_count(0)
    assert api_login(idp, email, LATER_PASSWORD).status_code == 401
    assert api_login(idp, email, NEW_PASSWORD).status_code == 200

    assert csp_violations(console) == []
    assert "Traceback" not in idp.error_log.read_text()
