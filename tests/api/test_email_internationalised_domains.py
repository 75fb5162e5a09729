"""Addresses at internationalised domains: one account per domain, in whatever case it is typed.

Under IDNA 2008 "ß" and "ς" are letters of their own: straße.de (xn--strae-oqa.de) and
strasse.de are two domains with two owners, and so are σίσυφος.gr and σίσυφοσ.gr. The account
key lower-cases a domain and never case-folds it (README "Security").
"""

from __future__ import annotations

from typing import Any

import pytest
from email_validator import validate_email
from flask import Flask
from flask.testing import FlaskClient

from tests.flows import API, PASSWORD, login, register, unique_email
from tests.oidc_flows import authorize_params, pkce, register_app, sign_in, start

OTHER_PASSWORD = "Battery-Staple-8"


def delivered_to(email: str) -> str:
    """The address the mail for `email` goes to: its domain in IDNA 2008 ASCII form."""
    return validate_email(email, check_deliverability=False).ascii_email


def register_and_verify_at(
    client: FlaskClient, mailbox: Any, email: str, password: str = PASSWORD
) -> str:
    response = register(client, email, password)
    assert response.status_code == 201, response.json
    token = mailbox.wait_for(delivered_to(email))[-1].token
    verified = client.post(f"{API}/verify-email/", json={"token": token})
    assert verified.status_code == 200, verified.json
    return response.json["data"]["user_id"]


def local_part(prefix: str) -> str:
    return unique_email(prefix).split("@")[0]


@pytest.mark.parametrize(
    "domains",
    [
        ("straße.de", "strasse.de"),
        ("strasse.de", "straße.de"),
        ("σίσυφος.gr", "σίσυφοσ.gr"),  # final sigma, then a sigma
        ("σίσυφοσ.gr", "σίσυφος.gr"),
    ],
)
def test_look_alike_domains_register_two_accounts_that_each_login_to_their_own(
    client, mailbox, domains
):
    local = local_part("ada")
    first, second = (f"{local}@{domain}" for domain in domains)
    assert delivered_to(first) != delivered_to(second)
    first_id = register_and_verify_at(client, mailbox, first, PASSWORD)
    second_id = register_and_verify_at(client, mailbox, second, OTHER_PASSWORD)
    assert first_id != second_id
    for email, password, user_id in (
        (first, PASSWORD, first_id),
        (second, OTHER_PASSWORD, second_id),
    ):
        response = login(client, email, password)
        assert response.status_code == 200, response.json
        assert response.json["data"]["user"]["id"] == user_id
        assert response.json["data"]["user"]["email"] == email
    # Each password opens its own account only.
    assert login(client, first, OTHER_PASSWORD).status_code == 401
    assert login(client, second, PASSWORD).status_code == 401


# (as registered, as typed later): the same address, in another case or form.
SAME_ADDRESS = [
    ("{local}@strasse.de", "{LOCAL}@STRASSE.DE"),
    ("{local}@straße.de", "{LOCAL}@STRAẞE.DE"),  # capital sharp s, U+1E9E
    ("{local}@straße.de", "{local}@Straße.De"),
    ("{local}@straße.de", "{local}@xn--strae-oqa.de"),  # its ASCII form
    ("{local}@σίσυφος.gr", "{LOCAL}@ΣΊΣΥΦΟς.GR"),
    ("{local}@σίσυφοσ.gr", "{LOCAL}@ΣΊΣΥΦΟΣ.GR"),  # IDNA makes every capital sigma a sigma
]


def spell(template: str, local: str) -> str:
    return template.format(local=local, LOCAL=local.upper())


@pytest.mark.parametrize(("registered", "typed"), SAME_ADDRESS)
def test_the_same_address_in_another_case_cannot_register_again_and_logs_in(
    client, mailbox, registered, typed
):
    local = local_part("case")
    user_id = register_and_verify_at(client, mailbox, spell(registered, local))
    again = register(client, spell(typed, local))
    assert again.status_code == 409, again.json
    assert again.json["code"] == "email_exists"
    response = login(client, spell(typed, local))
    assert response.status_code == 200, response.json
    assert response.json["data"]["user"]["id"] == user_id


def sign_in_through_the_page(browser: FlaskClient, app: Flask, email: str) -> Any:
    relying = register_app(app, public=True, first_party=True)
    to_sign_in = start(browser, authorize_params(relying, pkce()[1])).headers["Location"]
    return sign_in(browser, to_sign_in, email)


# The hosted sign-in page hands the address to the account service as typed: no validator has
# put the domain into its IDNA form first, and the key must still be the one registered.
@pytest.mark.parametrize(
    ("registered", "typed"),
    [
        ("{local}@straße.de", "{LOCAL}@STRAẞE.DE"),
        ("{local}@σίσυφοσ.gr", "{LOCAL}@ΣΊΣΥΦΟΣ.GR"),
        ("{local}@σίσυφος.gr", "{local}@σίσυφος.GR"),
    ],
)
def test_the_sign_in_page_finds_the_account_of_an_address_typed_in_another_case(
    app, client, browser, mailbox, registered, typed
):
    local = local_part("page")
    register_and_verify_at(client, mailbox, spell(registered, local))
    response = sign_in_through_the_page(browser, app, spell(typed, local))
    assert response.status_code == 303, response.text


def test_the_sign_in_page_does_not_let_a_look_alike_domain_into_the_account(
    app, client, browser, mailbox
):
    local = local_part("page")
    register_and_verify_at(client, mailbox, f"{local}@straße.de")
    response = sign_in_through_the_page(browser, app, f"{local}@strasse.de")
    assert response.status_code == 400
