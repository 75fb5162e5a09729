"""The account pages: sign-up, the mailed links' landings and password reset, in a browser's
shoes (CSRF token, Origin header), with the API's rules and the mail's links pointing here."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.flows import PASSWORD, login, register_and_verify, settle, unique_email
from tests.oidc_flows import (
    ISSUER,
    ORIGIN,
    authorize_params,
    csrf_token,
    follow_to_app,
    hidden,
    pkce,
    register_app,
    sign_in,
    start,
)

NEW_PASSWORD = "Battery-Staple-42"


@pytest.fixture
def pages_app(make_app: Any) -> Flask:
    """No IDP_FRONTEND_URL: the mails link to the hosted pages."""
    return make_app(IDP_FRONTEND_URL="")


@pytest.fixture
def browser(pages_app: Flask) -> FlaskClient:
    return pages_app.test_client()


def form_post(browser: FlaskClient, path: str, fields: dict[str, str], **kwargs: Any) -> Any:
    page = browser.get(path)
    assert page.status_code == 200, page.text
    data = {"csrf_token": csrf_token(page.text), **fields}
    return browser.post(path.split("?")[0], data=data, headers=ORIGIN, **kwargs)


def sign_up(browser: FlaskClient, email: str, password: str = PASSWORD) -> Any:
    fields = {"email": email, "password": password, "first_name": "Ada", "last_name": "Lovelace"}
    return form_post(browser, "/signup", fields)


def page_link(mail: Any, page: str) -> str:
    found = re.search(rf"{re.escape(ISSUER)}/{page}\?token=[A-Za-z0-9_-]+", mail.text)
    assert found, mail.text
    return found.group(0).removeprefix(ISSUER)


def test_sign_up_mails_a_link_to_the_landing_page_which_spends_it_only_on_the_button(
    browser, mailbox
):
    email = unique_email("signup")
    answer = sign_up(browser, email)
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/signup/check-mail")
    assert "Check your mail" in browser.get(answer.headers["Location"]).text
    settle(browser)
    link = page_link(mailbox.wait_for(email)[-1], "verify-email")

    landing = browser.get(link)
    assert landing.status_code == 200
    assert "Confirm my email address" in landing.text
    # Opening the link (a mail scanner does) spends nothing: the account is still unverified.
    assert login(browser, email).status_code == 403

    token = link.split("token=")[1]
    confirmed = browser.post(
        "/verify-email",
        data={"csrf_token": csrf_token(landing.text), "token": token},
        headers=ORIGIN,
    )
    assert confirmed.status_code == 200
    assert "confirmed" in confirmed.text
    assert login(browser, email).status_code == 200
    again = browser.post(
        "/verify-email",
        data={"csrf_token": csrf_token(landing.text), "token": token},
        headers=ORIGIN,
    )
    assert again.status_code == 400
    assert "does not work" in again.text
    # Opened again, the spent link says so at once: no button to press for nothing.
    reopened = browser.get(link)
    assert reopened.status_code == 400
    assert "does not work" in reopened.text
    assert "Confirm my email address" not in reopened.text


def test_a_weak_password_is_refused_on_its_field_and_nothing_is_created(browser, mailbox):
    email = unique_email("weak")
    answer = sign_up(browser, email, password="short")
    assert answer.status_code == 400
    assert 'aria-describedby="password-hint password-error"' in answer.text
    assert 'id="password-error" role="alert"' in answer.text
    assert 'value="short"' not in answer.text  # a password is never echoed
    settle(browser)
    assert mailbox.to(email) == []
    assert login(browser, email).status_code == 401


def test_a_malformed_address_is_refused_on_its_field(browser):
    answer = sign_up(browser, "not-an-address")
    assert answer.status_code == 400
    assert 'id="email-error" role="alert"' in answer.text


def test_a_taken_address_is_answered_as_the_api_does(browser, mailbox):
    email = unique_email("taken")
    register_and_verify(browser, mailbox, email)
    answer = sign_up(browser, email.upper())
    assert answer.status_code == 409
    assert "already exists" in answer.text


@pytest.mark.parametrize("path", ["/signup", "/forgot-password"])
def test_a_form_without_its_csrf_token_changes_nothing(browser, mailbox, path):
    email = unique_email("csrf")
    fields = {"email": email, "password": PASSWORD, "first_name": "A", "last_name": "B"}
    answer = browser.post(path, data=fields, headers=ORIGIN)
    assert answer.status_code == 400
    assert "expired" in answer.text
    settle(browser)
    assert mailbox.to(email) == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {**ORIGIN, "Sec-Fetch-Site": "cross-site"},
    ],
)
def test_a_form_sent_from_another_site_is_refused(browser, mailbox, headers):
    email = unique_email("xsite")
    page = browser.get("/signup")
    fields = {"csrf_token": csrf_token(page.text), "email": email, "password": PASSWORD}
    fields.update(first_name="A", last_name="B")
    answer = browser.post("/signup", data=fields, headers=headers)
    assert answer.status_code == 403
    assert answer.mimetype == "text/html"
    settle(browser)
    assert mailbox.to(email) == []


def test_forgot_password_answers_alike_and_the_reset_page_sets_a_new_password(
    pages_app, browser, mailbox
):
    email = unique_email("reset")
    register_and_verify(browser, mailbox, email)
    known = form_post(browser, "/forgot-password", {"email": email})
    unknown = form_post(browser, "/forgot-password", {"email": unique_email("nobody")})
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text
    settle(browser)
    link = page_link(mailbox.wait_for(email, count=2)[-1], "reset-password")

    weak = form_post(browser, link, {"token": link.split("token=")[1], "new_password": "short"})
    assert weak.status_code == 400
    assert 'id="new_password-error" role="alert"' in weak.text
    changed = form_post(
        browser, link, {"token": link.split("token=")[1], "new_password": NEW_PASSWORD}
    )
    assert changed.status_code == 200
    assert "changed" in changed.text
    assert login(browser, email).status_code == 401
    assert login(browser, email, NEW_PASSWORD).status_code == 200


def test_a_password_reset_ends_the_browser_session(pages_app, browser, mailbox):
    email = unique_email("resetsso")
    register_and_verify(browser, mailbox, email)
    relying = register_app(pages_app, public=True, first_party=True)
    _, challenge = pkce()
    first = follow_to_app(browser, start(browser, authorize_params(relying, challenge)), email)
    assert "code=" in first.headers["Location"]
    # Single sign-on while the session lives: straight back to the app.
    again = start(browser, authorize_params(relying, challenge))
    assert "code=" in again.headers["Location"]

    form_post(browser, "/forgot-password", {"email": email})
    settle(browser)
    link = page_link(mailbox.wait_for(email, count=2)[-1], "reset-password")
    form_post(browser, link, {"token": link.split("token=")[1], "new_password": NEW_PASSWORD})

    after = start(browser, authorize_params(relying, challenge))
    assert after.headers["Location"].startswith("/signin?")


def test_the_sign_in_page_counts_on_the_apis_login_limit(make_app, mailbox):
    app = make_app(IDP_RATELIMIT_ENABLED=True, IDP_RATELIMIT_AUTH="2 per minute")
    browser = app.test_client()
    email = unique_email("limit")
    assert login(browser, email).status_code == 401  # one through the API
    assert sign_in(browser, "/signin", email, "Wrong-Horse-7").status_code == 400
    refused = sign_in(browser, "/signin", email, "Wrong-Horse-7")
    assert refused.status_code == 429
    assert refused.mimetype == "text/html"
    assert int(refused.headers["Retry-After"]) >= 1


def test_the_sign_in_page_links_to_sign_up_and_reset_keeping_the_request(browser, pages_app):
    relying = register_app(pages_app, public=True)
    _, challenge = pkce()
    to_sign_in = start(browser, authorize_params(relying, challenge)).headers["Location"]
    page = browser.get(to_sign_in)
    interaction = hidden(page.text, "interaction")
    assert f'href="/signup?interaction={interaction}"' in page.text
    assert 'href="/forgot-password"' in page.text
    signup = browser.get(f"/signup?interaction={interaction}")
    assert hidden(signup.text, "interaction") == interaction


def test_the_sign_up_page_shows_every_fields_errors_at_once(browser):
    answer = sign_up(browser, "not-an-address", password="short")
    assert answer.status_code == 400
    assert 'id="email-error" role="alert"' in answer.text
    assert 'id="password-error" role="alert"' in answer.text
