from datetime import timedelta

from sqlalchemy import select

from idp.extensions import db
from idp.models import OneTimeToken
from idp.services.passwords import PasswordService
from idp.services.secret_tokens import digest
from tests.flows import (
    API,
    PASSWORD,
    logged_in_user,
    login,
    register,
    settle,
    unique_email,
    verify_token,
)

NEW_PASSWORD = "Brand-New-Secret-9"


def request_reset(client, email):
    return client.post(f"{API}/password-reset/", json={"email": email})


def confirm(client, token, password=NEW_PASSWORD):
    return client.post(
        f"{API}/password-reset-confirm/", json={"token": token, "new_password": password}
    )


def test_reset_answers_the_same_for_every_address(client, mailbox):
    user = logged_in_user(client, mailbox)
    known = request_reset(client, user.email)
    stranger = unique_email()
    unknown = request_reset(client, stranger)
    assert known.status_code == unknown.status_code == 200
    assert known.json == unknown.json
    settle(client)
    assert mailbox.to(stranger) == []
    mail = mailbox.wait_for(user.email, 2)[-1]
    assert "http://frontend.test/reset-password?token=" in mail.text


def test_reset_sets_the_password_and_ends_every_session(client, mailbox):
    user = logged_in_user(client, mailbox)
    second = login(client, user.email).json["data"]
    request_reset(client, user.email)
    token = mailbox.wait_for(user.email, 2)[-1].token
    response = confirm(client, token)
    assert response.status_code == 200
    for access in (user.token, second["token"]):
        assert verify_token(client, access).status_code == 401
    for refresh in (user.refresh_token, second["refresh_token"]):
        assert (
            client.post(f"{API}/token/refresh/", json={"refresh_token": refresh}).status_code == 401
        )
    assert login(client, user.email, PASSWORD).status_code == 401
    fresh = login(client, user.email, NEW_PASSWORD)
    assert fresh.status_code == 200
    assert verify_token(client, fresh.json["data"]["token"]).status_code == 200


def test_a_reset_link_works_once_and_spends_its_siblings(client, mailbox):
    user = logged_in_user(client, mailbox)
    request_reset(client, user.email)
    # One at a time: two mails in flight together may leave the older one dropped as
    # superseded (tests/api/test_recovery_links.py), and this test wants both sent.
    settle(client)
    request_reset(client, user.email)
    links = [m.token for m in mailbox.wait_for(user.email, 3)[-2:]]
    settle(client)
    results = [confirm(client, link).status_code for link in links]
    assert sorted(results) == [200, 400]
    live = links[results.index(200)]
    assert confirm(client, live, "Another-Secret-8").status_code == 400
    assert login(client, user.email, NEW_PASSWORD).status_code == 200


def test_a_weak_new_password_is_refused_and_the_link_still_works(client, mailbox):
    user = logged_in_user(client, mailbox)
    request_reset(client, user.email)
    token = mailbox.wait_for(user.email, 2)[-1].token
    weak = confirm(client, token, "weakpass")
    assert weak.status_code == 400
    assert "new_password" in weak.json["errors"]
    assert confirm(client, token).status_code == 200


def test_reset_links_live_24_hours_and_are_stored_hashed(app, client, mailbox):
    user = logged_in_user(client, mailbox)
    request_reset(client, user.email)
    token = mailbox.wait_for(user.email, 2)[-1].token
    with app.app_context():
        row = db.session.scalar(
            select(OneTimeToken).where(OneTimeToken.token_hash == digest(token))
        )
        assert row.purpose == "password_reset"
        assert row.expires_at - row.created_at == timedelta(hours=24)
        assert token not in row.token_hash
        row.expires_at = row.created_at
        db.session.commit()
    assert confirm(client, token).status_code == 400


def test_a_verification_token_cannot_reset_a_password(client, mailbox):
    email = unique_email()
    client.post(
        f"{API}/register/",
        json={"email": email, "password": PASSWORD, "first_name": "A", "last_name": "B"},
    )
    verification = mailbox.wait_for(email)[0].token
    assert confirm(client, verification).status_code == 400


def test_a_reset_committed_while_a_login_checks_the_old_password_refuses_that_login(
    app, client, mailbox, monkeypatch
):
    # An attacker who knows the old password logs in; the owner's reset commits while the
    # login's slow hash check runs. The login must not open a session the reset missed.
    user = logged_in_user(client, mailbox)
    request_reset(client, user.email)
    token = mailbox.wait_for(user.email, 2)[-1].token
    real_check = PasswordService.check
    resets: list[int] = []

    def check_while_the_owner_resets(self, password_hash, password):
        checked = real_check(self, password_hash, password)
        if not resets:
            resets.append(confirm(app.test_client(), token).status_code)
        return checked

    monkeypatch.setattr(PasswordService, "check", check_while_the_owner_resets)
    late = login(client, user.email, PASSWORD)
    monkeypatch.undo()

    assert resets == [200]
    assert late.status_code == 401, late.json
    assert late.json["code"] == "invalid_credentials"
    assert verify_token(client, user.token).status_code == 401
    assert login(client, user.email, PASSWORD).status_code == 401
    assert login(client, user.email, NEW_PASSWORD).status_code == 200


def test_a_newer_reset_link_spends_the_older_one(client, mailbox):
    user = logged_in_user(client, mailbox)
    request_reset(client, user.email)
    older = mailbox.wait_for(user.email, 2)[-1].token
    request_reset(client, user.email)
    newer = mailbox.wait_for(user.email, 3)[-1].token
    settle(client)  # the hand-over is committed just after SMTP has taken the mail
    refused = confirm(client, older)
    assert refused.status_code == 400 and refused.json["code"] == "invalid_token"
    assert confirm(client, newer).status_code == 200


def test_a_reset_of_a_never_verified_account_verifies_it(client, mailbox):
    email = unique_email()
    assert register(client, email).status_code == 201
    mailbox.wait_for(email)
    assert login(client, email, PASSWORD).status_code == 403
    request_reset(client, email)
    token = mailbox.wait_for(email, 2)[-1].token
    assert confirm(client, token).status_code == 200
    assert login(client, email, NEW_PASSWORD).status_code == 200
