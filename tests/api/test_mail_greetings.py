"""Registrant-chosen text in mails: names reach only addresses whose owner has proven them.

Anyone can register any address with any name; the verification mail then goes to that address.
If it greeted with the name, anyone could make idp send its genuine mail, with their text in it,
to anybody.
"""

from __future__ import annotations

import pytest

from tests.flows import API, register, register_and_verify, settle, unique_email

PLANTED = "Call 555-0100 at evil.example"


def mails_to(mailbox, email, count):
    return mailbox.wait_for(email, count)


def assert_no_planted_text(mail):
    for part in ("text/plain", "text/html"):
        assert "555-0100" not in mail.part(part) and "evil.example" not in mail.part(part)
    assert "555-0100" not in mail.subject


def test_the_verification_mail_carries_no_registrant_text(client, mailbox):
    victim = unique_email("victim")
    register(client, victim, first_name=PLANTED, last_name=PLANTED, company_name=PLANTED)
    client.post(f"{API}/resend-verification/", json={"email": victim})
    settle(client)
    first, resent = mails_to(mailbox, victim, 2)
    for mail in (first, resent):
        assert_no_planted_text(mail)
        assert mail.text.startswith("Hello,")


def test_a_reset_mail_to_a_never_verified_address_carries_no_registrant_text(client, mailbox):
    victim = unique_email("victim")
    register(client, victim, first_name=PLANTED)
    client.post(f"{API}/password-reset/", json={"email": victim})
    settle(client)
    reset = [m for m in mailbox.to(victim) if m.subject == "Reset your password"]
    assert len(reset) == 1
    assert_no_planted_text(reset[0])


def test_a_verified_owner_is_greeted_by_name(client, mailbox):
    owner = unique_email("owner")
    register_and_verify(client, mailbox, owner, first_name="Grace")
    client.post(f"{API}/password-reset/", json={"email": owner})
    settle(client)
    reset = mailbox.to(owner)[-1]
    assert reset.subject == "Reset your password"
    assert reset.text.startswith("Hello Grace,")
    assert "Hello Grace," in reset.part("text/html")


@pytest.mark.parametrize("verified", [False, True], ids=["unverified", "verified"])
def test_the_account_exists_mail_greets_only_a_verified_owner(make_app, mailbox, verified):
    client = make_app(IDP_REGISTRATION_PRIVACY=True).test_client()
    owner = unique_email("owner")
    if verified:
        register_and_verify(client, mailbox, owner, first_name="Grace")
    else:
        register(client, owner, first_name=PLANTED)
    settle(client)
    assert register(client, owner.upper(), first_name="Intruder").status_code == 201
    settle(client)
    (exists,) = [m for m in mailbox.to(owner) if m.subject == "You already have an account"]
    assert_no_planted_text(exists)
    assert "Intruder" not in exists.text
    assert exists.text.startswith("Hello Grace," if verified else "Hello,")
