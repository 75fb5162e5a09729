"""Registrant-chosen text in mails: no mail carries it, to any address.

Anyone can register any address with any name; the verification mail then goes to that address.
If it greeted with the name, anyone could make idp send its genuine mail, with their text in it,
to anybody. Verification does not make the name the owner's either: it proves the mailbox, and
a mailbox owner who took over an account someone else registered keeps that someone's name.
"""

from __future__ import annotations

import re

import pytest

from tests.flows import API, register, register_and_verify, settle, unique_email

PLANTED = "Call 555-0100 at evil.example"
RESET_LINK = re.compile(r"/reset-password\?token=([\w-]+)")


def mails_to(mailbox, email, count):
    return mailbox.wait_for(email, count)


def assert_no_planted_text(mail):
    for part in ("text/plain", "text/html"):
        assert "555-0100" not in mail.part(part) and "evil.example" not in mail.part(part)
    assert "555-0100" not in mail.subject


def test_the_verification_mail_carries_no_registrant_text(client, mailbox):
    victim = unique_email("victim")
    register(client, victim, first_name=PLANTED, last_name=PLANTED, company_name=PLANTED)
    # Delivered first: a resend handed over before it would supersede it (it is then dropped).
    settle(client)
    client.post(f"{API}/resend-verification/", json={"email": victim})
    settle(client)
    first, resent = mails_to(mailbox, victim, 2)
    for mail in (first, resent):
        assert_no_planted_text(mail)
        assert mail.text.startswith("Hello,")


def test_a_reset_mail_to_a_never_verified_address_carries_no_registrant_text(client, mailbox):
    victim = unique_email("victim")
    register(client, victim, first_name=PLANTED)
    settle(client)
    client.post(f"{API}/password-reset/", json={"email": victim})
    settle(client)
    reset = [m for m in mailbox.to(victim) if m.subject == "Reset your password"]
    assert len(reset) == 1
    assert_no_planted_text(reset[0])


def test_a_taken_over_account_gets_no_registrant_text_in_later_mails(client, mailbox):
    # The attacker registers the victim's address with a name that reads like a warning; the
    # victim takes the account over with the mail's reset link, which verifies the address.
    victim = unique_email("victim")
    register(client, victim, first_name=PLANTED)
    (mail,) = mails_to(mailbox, victim, 1)
    reset_token = RESET_LINK.search(mail.text).group(1)
    body = {"token": reset_token, "new_password": "Owners-Own-Pass-2"}
    assert client.post(f"{API}/password-reset-confirm/", json=body).status_code == 200
    # Resets the attacker asks for afterwards reach a verified address: still no name.
    client.post(f"{API}/password-reset/", json={"email": victim})
    settle(client)
    later = mailbox.to(victim)[-1]
    assert later.subject == "Reset your password"
    assert_no_planted_text(later)
    assert later.text.startswith("Hello,")


def test_a_verified_owner_is_greeted_without_a_name_too(client, mailbox):
    owner = unique_email("owner")
    register_and_verify(client, mailbox, owner, first_name="Grace")
    client.post(f"{API}/password-reset/", json={"email": owner})
    settle(client)
    reset = mailbox.to(owner)[-1]
    assert reset.subject == "Reset your password"
    assert reset.text.startswith("Hello,") and "Grace" not in reset.text
    assert "Grace" not in reset.part("text/html")


@pytest.mark.parametrize("verified", [False, True], ids=["unverified", "verified"])
def test_the_account_exists_mail_greets_no_one_by_name(make_app, mailbox, verified):
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
    assert exists.text.startswith("Hello,") and "Grace" not in exists.text
