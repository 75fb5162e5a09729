from datetime import timedelta

from sqlalchemy import update

from idp.clock import utcnow
from idp.extensions import db
from idp.models import OneTimeToken
from tests.flows import API, login, register, settle, unique_email


def _registered(client, mailbox):
    email = unique_email()
    assert register(client, email).status_code == 201
    return email, mailbox.wait_for(email)[0].token


def test_verification_activates_and_the_link_works_once(client, mailbox):
    email, token = _registered(client, mailbox)
    assert login(client, email).status_code == 403
    first = client.post(f"{API}/verify-email/", json={"token": token})
    assert first.status_code == 200 and first.json["success"] is True
    assert login(client, email).status_code == 200
    again = client.post(f"{API}/verify-email/", json={"token": token})
    assert again.status_code == 400
    assert again.json["code"] == "invalid_token"


def test_an_expired_link_is_refused(app, client, mailbox):
    email, token = _registered(client, mailbox)
    with app.app_context():
        db.session.execute(update(OneTimeToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    response = client.post(f"{API}/verify-email/", json={"token": token})
    assert response.status_code == 400
    assert login(client, email).status_code == 403


def test_verification_links_expire_after_48_hours(app, client, mailbox):
    _registered(client, mailbox)
    with app.app_context():
        row = db.session.scalar(db.select(OneTimeToken))
        assert row.expires_at - row.created_at == timedelta(hours=48)


def test_a_made_up_token_is_400(client):
    response = client.post(f"{API}/verify-email/", json={"token": "A" * 43})
    assert response.status_code == 400
    assert response.json["code"] == "invalid_token"
    bad_shape = client.post(f"{API}/verify-email/", json={"token": "'; drop table users; --"})
    assert bad_shape.status_code == 400
    assert bad_shape.json["code"] == "validation_error"


def test_a_reset_token_cannot_verify_an_email(client, mailbox):
    email, _ = _registered(client, mailbox)
    client.post(f"{API}/password-reset/", json={"email": email})
    reset_token = mailbox.wait_for(email, 2)[-1].token
    assert client.post(f"{API}/verify-email/", json={"token": reset_token}).status_code == 400


def test_resend_answers_the_same_for_every_address(client, mailbox):
    email, _ = _registered(client, mailbox)
    unknown = client.post(f"{API}/resend-verification/", json={"email": unique_email()})
    known = client.post(f"{API}/resend-verification/", json={"email": email.upper()})
    assert unknown.status_code == known.status_code == 200
    assert unknown.json == known.json
    # A new link went to the real owner; both links work until one is used.
    mails = mailbox.wait_for(email, 2)
    assert client.post(f"{API}/verify-email/", json={"token": mails[-1].token}).status_code == 200
    assert client.post(f"{API}/verify-email/", json={"token": mails[0].token}).status_code == 400


def test_resend_for_a_verified_account_sends_nothing(client, mailbox):
    email, token = _registered(client, mailbox)
    client.post(f"{API}/verify-email/", json={"token": token})
    response = client.post(f"{API}/resend-verification/", json={"email": email})
    assert response.status_code == 200
    settle(client)
    assert len(mailbox.to(email)) == 1


def test_a_resent_link_spends_the_first_one(client, mailbox):
    email, first = _registered(client, mailbox)
    assert client.post(f"{API}/resend-verification/", json={"email": email}).status_code == 200
    resent = mailbox.wait_for(email, 2)[-1].token
    settle(client)  # the hand-over is committed just after SMTP has taken the mail
    refused = client.post(f"{API}/verify-email/", json={"token": first})
    assert refused.status_code == 400 and refused.json["code"] == "invalid_token"
    assert client.post(f"{API}/verify-email/", json={"token": resent}).status_code == 200
    assert login(client, email).status_code == 200
