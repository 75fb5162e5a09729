"""Pre-account hijacking: an attacker registers the victim's address with a password of their own.

The mailbox's owner always wins: the verification mail says what to do when you did not
register and carries a reset link; a reset replaces the registrant's password, verifies the
address and ends every session, the attacker's included.
"""

from __future__ import annotations

import re

from tests.flows import API, login, register, settle, unique_email, verify_token

ATTACKER_PASSWORD = "Attackers-Own-1"
OWNER_PASSWORD = "Owners-Own-Pass-2"
RESET_LINK = re.compile(r"http://frontend\.test/reset-password\?token=([\w-]+)")


def reset_with(client, token, password=OWNER_PASSWORD):
    body = {"token": token, "new_password": password}
    return client.post(f"{API}/password-reset-confirm/", json=body)


def the_verification_mail(client, mailbox, victim):
    assert register(client, victim, ATTACKER_PASSWORD).status_code == 201
    settle(client)
    (mail,) = mailbox.wait_for(victim)
    return mail


def test_the_verification_mail_tells_a_non_registrant_what_to_do(client, mailbox):
    mail = the_verification_mail(client, mailbox, unique_email("victim"))
    text = mail.text
    assert "Did not create an account?" in text
    assert "Do not open the link above" in text
    assert "set your own password" in text
    (reset_token,) = RESET_LINK.findall(text)
    assert reset_token != mail.token  # the first link is the verification link
    html = mail.part("text/html")
    assert "Did not create an account?" in html and reset_token in html


def test_the_mailbox_owner_takes_the_account_over_in_one_step(client, mailbox):
    victim = unique_email("victim")
    mail = the_verification_mail(client, mailbox, victim)
    (reset_token,) = RESET_LINK.findall(mail.text)

    assert reset_with(client, reset_token).status_code == 200
    # The registrant's password is gone; the owner's works, and the address is verified.
    assert login(client, victim, ATTACKER_PASSWORD).status_code == 401
    signed_in = login(client, victim, OWNER_PASSWORD)
    assert signed_in.status_code == 200, signed_in.json
    assert signed_in.json["data"]["user"]["email_verified"] is True


def test_an_owner_who_clicked_verify_still_wins_and_the_attackers_sessions_end(client, mailbox):
    victim = unique_email("victim")
    mail = the_verification_mail(client, mailbox, victim)
    (reset_token,) = RESET_LINK.findall(mail.text)
    # The owner clicks the verification link by mistake: the registrant can now sign in.
    assert client.post(f"{API}/verify-email/", json={"token": mail.token}).status_code == 200
    attacker = login(client, victim, ATTACKER_PASSWORD).json["data"]

    assert reset_with(client, reset_token).status_code == 200
    assert verify_token(client, attacker["token"]).status_code == 401
    refreshed = client.post(
        f"{API}/token/refresh/", json={"refresh_token": attacker["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert login(client, victim, ATTACKER_PASSWORD).status_code == 401
    assert login(client, victim, OWNER_PASSWORD).status_code == 200


def test_the_takeover_link_works_once(client, mailbox):
    victim = unique_email("victim")
    mail = the_verification_mail(client, mailbox, victim)
    (reset_token,) = RESET_LINK.findall(mail.text)
    assert reset_with(client, reset_token).status_code == 200
    assert reset_with(client, reset_token, "Another-Pass-3").status_code == 400


def test_the_verification_landing_answer_tells_a_non_registrant_what_to_do(client, mailbox):
    mail = the_verification_mail(client, mailbox, unique_email("victim"))
    answer = client.post(f"{API}/verify-email/", json={"token": mail.token})
    assert answer.status_code == 200
    assert answer.json["message"].startswith("Email verified. You can now log in.")
    assert "Did not create this account? Reset its password now" in answer.json["message"]
