import statistics
import time
import unicodedata

from argon2 import PasswordHasher
from sqlalchemy import select

from idp.extensions import db
from idp.models import User
from tests.flows import API, PASSWORD, login, register, register_and_verify, unique_email


def test_login_returns_tokens_and_the_user(client, mailbox):
    email = unique_email()
    user_id = register_and_verify(client, mailbox, email)
    response = login(client, email.upper())
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    data = response.json["data"]
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == 3600
    assert data["token"].count(".") == 2
    assert len(data["refresh_token"]) >= 43
    assert data["user"] == {
        "id": user_id,
        "email": email,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company_name": None,
        "email_verified": True,
    }


def test_wrong_password_and_unknown_email_are_indistinguishable(client, mailbox):
    email = unique_email()
    register_and_verify(client, mailbox, email)
    wrong = login(client, email, "Wrong-Password-1")
    unknown = login(client, unique_email(), PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json
        == unknown.json
        == {
            "success": False,
            "message": "Invalid email or password.",
            "code": "invalid_credentials",
        }
    )


def test_unverified_account_is_403_only_with_the_right_password(client, mailbox):
    email = unique_email()
    register(client, email)
    assert login(client, email, "Wrong-Password-1").status_code == 401
    response = login(client, email)
    assert response.status_code == 403
    assert response.json["code"] == "email_not_verified"


def test_unknown_email_costs_as_much_time_as_a_wrong_password(make_app, mailbox):
    # Realistic Argon2 cost so that the hash, not noise, dominates each request.
    client = make_app(
        IDP_ARGON2_TIME_COST=2, IDP_ARGON2_MEMORY_COST=19456, IDP_ARGON2_PARALLELISM=1
    ).test_client()
    email = unique_email()
    register_and_verify(client, mailbox, email)

    # Alternated, so that a busy machine slows both sides alike.
    samples: dict[str, list[float]] = {email: [], unique_email(): []}
    for _ in range(11):
        for address, times in samples.items():
            start = time.perf_counter()
            assert login(client, address, "Wrong-Password-1").status_code == 401
            times.append(time.perf_counter() - start)
    known, unknown = (statistics.median(times) for times in samples.values())
    assert abs(known - unknown) / max(known, unknown) < 0.3, (known, unknown)


def verified_user_whose_hash_is(app, client, mailbox, password_hash: str) -> str:
    """A verified account whose stored hash is replaced, as an older release would have left it."""
    email = unique_email()
    register_and_verify(client, mailbox, email)
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        user.password_hash = password_hash
        db.session.commit()
    return email


def stored_hash(app, email: str) -> str:
    with app.app_context():
        return db.session.scalar(select(User.password_hash).where(User.email == email))


def test_a_stored_hash_with_old_parameters_is_upgraded_at_login(app, client, mailbox):
    old = PasswordHasher(time_cost=1, memory_cost=512, parallelism=1).hash(PASSWORD)
    email = verified_user_whose_hash_is(app, client, mailbox, old)
    assert login(client, email).status_code == 200
    upgraded = stored_hash(app, email)
    assert upgraded != old and "m=1024" in upgraded


COMPOSED = unicodedata.normalize("NFC", "Café-Crème-2024")
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)


def test_a_password_typed_composed_or_decomposed_is_one_password(client, mailbox):
    # Windows keyboards type "é" as one code point, macOS often as "e" + a combining accent.
    assert COMPOSED != DECOMPOSED
    email = unique_email()
    register_and_verify(client, mailbox, email, password=DECOMPOSED)
    assert login(client, email, COMPOSED).status_code == 200
    assert login(client, email, DECOMPOSED).status_code == 200


def test_a_hash_of_an_unnormalised_password_still_logs_in_and_is_upgraded(app, client, mailbox):
    # Stored before passwords were normalised: the hash is of the form as typed.
    legacy = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(DECOMPOSED)
    email = verified_user_whose_hash_is(app, client, mailbox, legacy)
    assert login(client, email, DECOMPOSED).status_code == 200
    upgraded = stored_hash(app, email)
    assert upgraded != legacy
    assert PasswordHasher().verify(upgraded, COMPOSED)
    assert login(client, email, COMPOSED).status_code == 200
    assert login(client, email, "Cafe-Creme-2024").status_code == 401


def test_an_overlong_password_is_refused_before_hashing(client, mailbox):
    email = unique_email()
    register_and_verify(client, mailbox, email)
    response = login(client, email, "A1a" + "x" * 1000)
    assert response.status_code == 401
    too_big = login(client, email, "A1a" + "x" * 5000)
    assert too_big.status_code == 400


def test_login_requires_json(client):
    form = client.post(f"{API}/login/", data={"email": "a@example.com", "password": "x"})
    assert form.status_code == 415
    text = client.post(f"{API}/login/", data='{"email": "a"}', content_type="text/plain")
    assert text.status_code == 415
    broken = client.post(f"{API}/login/", data="{not json", content_type="application/json")
    assert broken.status_code == 400 and broken.json["code"] == "malformed_request"
    array = client.post(f"{API}/login/", json=["a@example.com"])
    assert array.status_code == 400
