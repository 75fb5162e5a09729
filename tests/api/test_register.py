import threading

import pytest
from sqlalchemy import func, select

from idp.extensions import db
from idp.models import OneTimeToken, User
from idp.services.secret_tokens import digest
from tests.flows import API, PASSWORD, register, register_and_verify, settle, unique_email
from tests.support import TOKEN_IN_LINK


def test_register_creates_an_inactive_user_and_mails_a_link(app, client, mailbox):
    email = unique_email()
    response = register(client, email, company_name="Analytical Engines")
    assert response.status_code == 201
    assert response.json["success"] is True
    user_id = response.json["data"]["user_id"]
    with app.app_context():
        user = db.session.scalar(select(User).where(User.public_id == user_id))
        assert user.is_active is False
        assert user.email_verified_at is None
        assert user.company_name == "Analytical Engines"
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
        rows = db.session.execute(select(OneTimeToken.token_hash, OneTimeToken.purpose))
        stored = {token_hash: purpose for token_hash, purpose in rows}
    mail = mailbox.wait_for(email)[0]
    assert mail.text.count("http://frontend.test/verify-email?token=") == 1
    # "Did not register?": a reset link lets the mailbox's owner take the account over.
    assert mail.text.count("http://frontend.test/reset-password?token=") == 1
    tokens = TOKEN_IN_LINK.findall(mail.text)
    # Only digests of the links' tokens are stored.
    assert {stored[digest(t)] for t in tokens} == {"verify_email", "password_reset"}
    assert len(stored) == 2 and not set(tokens) & set(stored)
    assert all(token in mail.part("text/html") for token in tokens)


def test_the_public_id_is_opaque_not_sequential(client):
    first = register(client, unique_email()).json["data"]["user_id"]
    second = register(client, unique_email()).json["data"]["user_id"]
    assert not first.isdigit() and len(first) >= 32 and first != second


@pytest.mark.parametrize("spelling", ["same@example.com", "SAME@example.com", "Same@EXAMPLE.COM"])
def test_a_duplicate_email_in_any_case_is_409(client, spelling):
    assert register(client, "same@example.com").status_code == 201
    response = register(client, spelling)
    assert response.status_code == 409
    assert response.json == {
        "success": False,
        "message": "An account with this email address already exists.",
        "code": "email_exists",
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@b"}, "email"),
        ({"email": 42}, "email"),
        ({"email": None}, "email"),
        ({"password": "short1A"}, "password"),
        ({"password": "alllowercase1"}, "password"),
        ({"password": "ALLUPPERCASE1"}, "password"),
        ({"password": "NoDigitsHere"}, "password"),
        ({"password": "Aa1" + "x" * 200}, "password"),
        ({"password": "Aa1" + "x" * 2000}, "password"),
        ({"password": 12345678}, "password"),
        ({"first_name": ""}, "first_name"),
        ({"first_name": "   "}, "first_name"),
        ({"first_name": "x" * 151}, "first_name"),
        ({"first_name": "Ada\x00"}, "first_name"),
        ({"last_name": "Love\nlace"}, "last_name"),
        ({"last_name": ["Lovelace"]}, "last_name"),
        ({"email": "a" * 65 + "@example.com"}, "email"),
        ({"first_name": "Ada\u202eecalevoL"}, "first_name"),
        ({"last_name": "Love\u200blace"}, "last_name"),
        ({"last_name": "Love\u2028lace"}, "last_name"),
        ({"company_name": "Acme\u2066Inc"}, "company_name"),
        ({"company_name": 7}, "company_name"),
        ({"company_name": "x" * 201}, "company_name"),
    ],
)
def test_invalid_fields_are_400_with_per_field_errors(app, client, mailbox, changes, field):
    email = unique_email()
    body = {"email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace"}
    body.update(changes)
    response = client.post(f"{API}/register/", json=body)
    assert response.status_code == 400
    assert response.json["success"] is False
    assert response.json["code"] == "validation_error"
    assert list(response.json["errors"]) == [field]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
    assert mailbox.to(email) == []


def test_a_pasted_address_with_a_trailing_tab_and_script_joiners_in_names_register(
    app, client, mailbox
):
    email = unique_email()
    body = {
        "email": f" {email}\t\n",
        "password": PASSWORD,
        "first_name": "\u0639\u0644\u06cc\u200c\u0631\u0636\u0627",  # Persian, with a ZWNJ
        "last_name": "Lovelace",
    }
    response = client.post(f"{API}/register/", json=body)
    assert response.status_code == 201, response.json
    with app.app_context():
        stored = db.session.scalar(select(User).where(User.email == email))
        assert stored is not None and stored.first_name == body["first_name"]


def test_missing_fields_are_each_reported(client):
    response = client.post(f"{API}/register/", json={})
    assert response.status_code == 400
    assert set(response.json["errors"]) == {"email", "password", "first_name", "last_name"}


def test_names_are_stored_as_given_and_never_rendered_into_mail(app, client, mailbox):
    email = unique_email()
    register_and_verify(client, mailbox, email, first_name="<script>alert(1)</script>")
    client.post(f"{API}/password-reset/", json={"email": email})
    for mail in mailbox.wait_for(email, 2):
        html = mail.part("text/html")
        assert "<script>" not in html and "alert(1)" not in html and "alert(1)" not in mail.text
    with app.app_context():
        stored = db.session.scalar(select(User).where(User.email == email))
        assert stored.first_name == "<script>alert(1)</script>"


def test_a_failing_smtp_server_does_not_lose_the_account(make_app, mailbox):
    from tests.support import free_port

    broken = make_app(IDP_MAIL_PORT=free_port(), IDP_MAIL_TIMEOUT=2).test_client()
    email = unique_email()
    assert register(broken, email).status_code == 201
    settle(broken)
    assert mailbox.to(email) == []
    # Mail is back: resend delivers a link that works.
    working = make_app().test_client()
    assert working.post(f"{API}/resend-verification/", json={"email": email}).status_code == 200
    token = mailbox.wait_for(email)[0].token
    assert working.post(f"{API}/verify-email/", json={"token": token}).status_code == 200


def test_concurrent_registrations_of_one_email_create_one_account(app, mailbox):
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def attempt(spelling: str) -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(register(client, spelling).status_code)

    spellings = ["race@example.com", "RACE@example.com", "Race@Example.com"] * 2
    threads = [threading.Thread(target=attempt, args=(s,)) for s in spellings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [201, 409, 409, 409, 409, 409]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.parametrize(
    "look_alike",
    [
        "ADA.LOOK@EXAMPLE.COM",
        "ada.look@example.com ",
        "\u0430da.look@example.com",  # Cyrillic a
        "\uff41da.look@example.com",  # fullwidth a
        "ada.look@EXAMPLE.com",
    ],
)
def test_look_alike_spellings_cannot_create_a_second_account(app, client, look_alike):
    assert register(client, "ada.look@example.com").status_code == 201
    assert register(client, look_alike).status_code in (400, 409)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_every_fields_errors_come_at_once_the_password_policy_included(client):
    response = client.post(
        f"{API}/register/",
        json={"email": "not-an-address", "password": "short", "first_name": "", "last_name": "L"},
    )
    assert response.status_code == 400
    errors = response.json["errors"]
    assert set(errors) == {"email", "first_name", "password"}
    assert "Password must contain an uppercase letter." in errors["password"]


def test_a_reset_confirmation_reports_a_weak_password_with_a_malformed_token(client):
    response = client.post(
        f"{API}/password-reset-confirm/", json={"token": "?", "new_password": "short"}
    )
    assert response.status_code == 400
    assert set(response.json["errors"]) == {"token", "new_password"}


def test_mail_for_an_internationalised_domain_reaches_that_domain_not_a_look_alike(client, mailbox):
    """straße.de is xn--strae-oqa.de (IDNA 2008). Python's IDNA 2003 codec, which flask-mail
    would use, turns it into strasse.de: another domain, whose owner would get the links."""
    local = unique_email("carol").split("@")[0]
    email, ascii_address = f"{local}@straße.de", f"{local}@xn--strae-oqa.de"
    assert register(client, email).status_code == 201
    (verification,) = mailbox.wait_for(ascii_address)
    verified = client.post(f"{API}/verify-email/", json={"token": verification.token})
    assert verified.status_code == 200, verified.json
    assert client.post(f"{API}/password-reset/", json={"email": email}).status_code == 200
    settle(client)
    mailbox.wait_for(ascii_address, count=2)
    recipients = {to for mail in mailbox.messages for to in mail.to}
    assert recipients == {ascii_address}
