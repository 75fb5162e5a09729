"""AccountService: registration, verification, login checks, refresh and password reset."""

from __future__ import annotations

from datetime import timedelta

import pytest
from email_validator import validate_email
from sqlalchemy import func, select

from idp import transaction
from idp.errors import (
    EmailAlreadyRegistered,
    EmailNotVerified,
    InvalidAccessToken,
    InvalidCredentials,
    InvalidOneTimeToken,
    InvalidRefreshToken,
    ValidationFailed,
)
from idp.extensions import db
from idp.models import OneTimeToken, OutboxMail, RefreshSession, User
from idp.services.accounts import canonical_email
from idp.services.registry import get_services
from idp.services.sessions import API_SCOPE, PASSWORD_RESET
from tests.flows import API_CLIENT_ID, PASSWORD, unique_email
from tests.support import TOKEN_IN_LINK
from tests.unit.service_support import NOW

LATER = NOW + timedelta(minutes=5)
NEW_PASSWORD = "Battery-Staple-8"


def register(email: str, password: str = PASSWORD) -> str:
    return get_services().accounts.register(
        email=email,
        password=password,
        first_name="Ada",
        last_name="Lovelace",
        company_name=None,
        now=NOW,
    )


def registered(mailbox, email: str) -> tuple[User, str, str]:
    """Register and commit; return the account and its mail's verify and reset tokens."""
    public_id = register(email)
    transaction.commit()
    assert get_services().jobs.drain()
    verify, reset = TOKEN_IN_LINK.findall(mailbox.wait_for(email)[-1].text)
    return db.session.scalar(select(User).where(User.public_id == public_id)), verify, reset


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_register_stages_the_account_its_tokens_and_its_mail_in_one_transaction(app, mailbox):
    email = unique_email("Staged")
    with app.app_context():
        register(email)
        # Staged, flushed, not committed: a rollback takes all three away together.
        assert (count(User), count(OneTimeToken), count(OutboxMail)) == (1, 2, 1)
        db.session.rollback()
        assert (count(User), count(OneTimeToken), count(OutboxMail)) == (0, 0, 0)
        assert get_services().jobs.drain()
        assert mailbox.to(email) == []  # nothing was sent for the rolled-back account

        user, _verify, _reset = registered(mailbox, email)
        assert (user.is_active, user.email_verified_at) == (False, None)
        assert user.email_canonical == email.lower()
        mail = db.session.scalar(select(OutboxMail))
        tokens = db.session.scalars(select(OneTimeToken)).all()
        assert {t.purpose for t in tokens} == {"verify_email", "password_reset"}
        assert {t.mail_id for t in tokens} == {mail.id}


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("Short1a", "at least 8 characters"),
        ("Aa1" + "x" * 126, "at most 128 characters"),
        ("lower-case-only-7", "an uppercase letter"),
        ("UPPER-CASE-ONLY-7", "a lowercase letter"),
        ("No-Digits-Here", "a digit"),
        ("Password1", "too common"),
        ("Adalovelace-99", "must not contain your email"),
    ],
)
def test_register_refuses_a_password_against_the_policy_before_storing_anything(
    app, password, problem
):
    with app.app_context():
        with pytest.raises(ValidationFailed) as refused:
            register("adalovelace@example.com", password)
        assert any(problem in message for message in refused.value.errors["password"])
        assert count(User) == 0


@pytest.mark.parametrize(
    "again",
    ["ADA.taken@EXAMPLE.com", "\uff41\uff44\uff41.taken@example.com"],  # full-width
)
def test_an_address_taken_in_any_case_or_spelling_is_refused(app, mailbox, again):
    with app.app_context():
        registered(mailbox, "ada.taken@example.com")
        with pytest.raises(EmailAlreadyRegistered):
            register(again)
        assert count(User) == 1


def test_with_registration_privacy_a_taken_address_gets_a_fresh_id_and_its_owner_a_mail(
    make_app, mailbox
):
    app = make_app(IDP_REGISTRATION_PRIVACY=True)
    with app.app_context():
        owner, _verify, _reset = registered(mailbox, "owner@example.com")
        public_id = register("Owner@example.com")
        transaction.commit()
        assert public_id != owner.public_id
        assert count(User) == 1
        db.session.rollback()  # SQLite's transactions are immediate: the job would wait on us
        assert get_services().jobs.drain()
    subjects = [m.subject for m in mailbox.wait_for("owner@example.com", 2)]
    assert subjects == ["Confirm your email address", "You already have an account"]


def test_verify_email_activates_the_account_once(app, mailbox):
    with app.app_context():
        accounts = get_services().accounts
        user, verify, _reset = registered(mailbox, unique_email())
        assert accounts.verify_email(verify, LATER).public_id == user.public_id
        transaction.commit()
        db.session.refresh(user)
        assert (user.is_active, user.email_verified_at) == (True, LATER)
        with pytest.raises(InvalidOneTimeToken):
            accounts.verify_email(verify, LATER)


def test_authenticate_tells_an_unverified_account_only_to_the_right_password(app, mailbox):
    with app.app_context():
        accounts = get_services().accounts
        user, _verify, _reset = registered(mailbox, unique_email())
        with pytest.raises(InvalidCredentials):
            accounts.authenticate(user.email, "Wrong-Password-1", LATER)
        with pytest.raises(EmailNotVerified):
            accounts.authenticate(user.email, PASSWORD, LATER)
        with pytest.raises(InvalidCredentials):
            accounts.authenticate(unique_email("nobody"), PASSWORD, LATER)


def test_login_and_refresh_use_the_configured_api_client(make_app, mailbox):
    app = make_app(IDP_API_CLIENT_ID="our-api")
    with app.app_context():
        services = get_services()
        user, verify, _reset = registered(mailbox, unique_email())
        services.accounts.verify_email(verify, NOW)
        transaction.commit()
        pair = services.accounts.login(user.email.upper(), PASSWORD, NOW)
        transaction.commit()
        assert services.access_tokens.decode(pair.access_token, NOW)["client_id"] == "our-api"
        assert services.accounts.refresh(pair.refresh_token, LATER).session_id == pair.session_id
        transaction.commit()
        # A session of another client (here the default id) cannot be refreshed through the
        # API, and presenting its token revokes nothing.
        foreign = services.sessions.start(user, API_CLIENT_ID, API_SCOPE, NOW)
        transaction.commit()
        with pytest.raises(InvalidRefreshToken):
            services.accounts.refresh(foreign.refresh_token, LATER)
        db.session.rollback()
        row = db.session.scalar(
            select(RefreshSession).where(RefreshSession.public_id == foreign.session_id)
        )
        assert row.revoked_at is None


def test_confirm_password_reset_ends_every_session_and_changes_the_password(app, mailbox):
    with app.app_context():
        services = get_services()
        user, _verify, reset = registered(mailbox, unique_email())  # never verified
        pairs = [services.sessions.start(user, API_CLIENT_ID, API_SCOPE, NOW) for _ in range(2)]
        transaction.commit()
        services.accounts.confirm_password_reset(reset, NEW_PASSWORD, LATER)
        transaction.commit()
        sessions = db.session.scalars(select(RefreshSession)).all()
        assert {(s.revoked_at, s.revoked_reason) for s in sessions} == {(LATER, PASSWORD_RESET)}
        db.session.refresh(user)
        # The link reached the mailbox: that verifies the address too.
        assert (user.sessions_valid_after, user.email_verified_at, user.is_active) == (
            LATER,
            LATER,
            True,
        )
        for pair in pairs:
            with pytest.raises(InvalidAccessToken):
                services.access_tokens.verify(pair.access_token, LATER)
        with pytest.raises(InvalidCredentials):
            services.accounts.authenticate(user.email, PASSWORD, LATER)
        assert services.accounts.authenticate(user.email, NEW_PASSWORD, LATER).id == user.id
        with pytest.raises(InvalidOneTimeToken):
            services.accounts.confirm_password_reset(reset, "Another-Pass-9", LATER)


@pytest.mark.parametrize("weak", ["weak", "{local}-Secret-1"])
def test_a_refused_new_password_leaves_the_reset_link_usable(app, mailbox, weak):
    email = unique_email("resetter")
    with app.app_context():
        accounts = get_services().accounts
        user, _verify, reset = registered(mailbox, email)
        # The second one is refused only once the token has named the account.
        with pytest.raises(ValidationFailed) as refused:
            accounts.confirm_password_reset(reset, weak.format(local=email.split("@")[0]), LATER)
        assert "new_password" in refused.value.errors
        assert accounts.confirm_password_reset(reset, NEW_PASSWORD, LATER).id == user.id


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("Ada@STRASSE.DE", "ada@strasse.de"),
        ("ada@straße.de", "ada@straße.de"),  # not strasse.de: IDNA 2008 keeps "ß"
        ("ADA@STRAẞE.DE", "ada@straße.de"),  # capital sharp s lowers to "ß"
        ("ada@σίσυφος.gr", "ada@σίσυφος.gr"),  # the final sigma kept, not folded
        ("ADA@ΣΊΣΥΦΟΣ.GR", "ada@σίσυφοσ.gr"),  # as IDNA: no capital sigma is final
        ("\uff21da@\uff25xample.com", "ada@example.com"),  # full-width, NFKC
        ("Ada@Example.com", "ada@example.com"),
    ],
)
def test_the_canonical_key_folds_the_local_part_and_lowers_the_domain(typed, key):
    assert canonical_email(typed) == key


@pytest.mark.parametrize(
    "typed",
    [
        "Ada@STRASSE.DE",
        "ADA@STRAẞE.DE",
        "ada@Straße.de",
        "ADA@ΣΊΣΥΦΟΣ.GR",
        "ADA@ΣΊΣΥΦΟς.GR",
        "ada@σίσυφος.gr",
        "Ada@\uff33\uff34\uff32\uff21\u1e9e\uff25.de",  # full-width with a capital sharp s
        "Ada@İSTANBUL.TR",
    ],
)
def test_an_address_has_one_key_as_typed_and_as_the_api_normalised_it(typed):
    # The API stores and looks up what its validator made of the address; the hosted sign-in
    # page and the CLI pass it as typed. Both must reach the same account.
    normalized = validate_email(typed, check_deliverability=False, allow_smtputf8=False).normalized
    assert canonical_email(typed) == canonical_email(normalized)
    assert canonical_email(canonical_email(typed)) == canonical_email(typed)


def test_look_alike_domains_are_two_accounts_each_found_in_any_case(app):
    with app.app_context():
        sharp = register("ada.domains@straße.de")
        double = register("ada.domains@strasse.de")
        transaction.commit()
        accounts = get_services().accounts
        assert accounts.find_by_email("ADA.DOMAINS@STRAẞE.DE").public_id == sharp
        assert accounts.find_by_email("Ada.Domains@STRASSE.DE").public_id == double
        db.session.rollback()  # SQLite's transactions are immediate: the mail jobs would wait
        assert get_services().jobs.drain()
