"""The password length rule at login is the policy's: counted after NFKC, as typed or not.

A passphrase typed decomposed (macOS types "é" as "e" + a combining accent) is longer as typed
than the password the policy accepted and hashed; login must not refuse it for its raw length.
"""

from __future__ import annotations

import json
import unicodedata

from idp.services.passwords import MAX_PASSWORD_LENGTH
from tests.flows import API, PASSWORD, login, register, register_and_verify, unique_email


def decomposed(text: str) -> str:
    return unicodedata.normalize("NFD", text)


# 144 code points as typed, 74 once normalised.
LONG_DECOMPOSED = decomposed("Aa1-" + "é" * 70)
# Exactly the limit once normalised, almost twice it as typed.
AT_THE_LIMIT = decomposed("Aa1-" + "é" * (MAX_PASSWORD_LENGTH - 4))
# One over the limit once normalised.
OVER_THE_LIMIT = decomposed("Aa1-" + "é" * (MAX_PASSWORD_LENGTH - 3))
# Within the limit as typed, over it once normalised: "ﬃ" is "ffi".
EXPANDS_OVER_THE_LIMIT = "Aa1-" + "\ufb03" + "x" * (MAX_PASSWORD_LENGTH - 5)


def login_refusals(audit_output) -> list[str]:
    events = [json.loads(line) for line in audit_output.getvalue().splitlines()]
    return [e["reason"] for e in events if e["event"] == "login.failure"]


def test_the_lengths_are_what_the_tests_say():
    assert (len(LONG_DECOMPOSED), len(unicodedata.normalize("NFKC", LONG_DECOMPOSED))) == (144, 74)
    assert len(unicodedata.normalize("NFKC", AT_THE_LIMIT)) == MAX_PASSWORD_LENGTH
    assert len(unicodedata.normalize("NFKC", OVER_THE_LIMIT)) == MAX_PASSWORD_LENGTH + 1
    assert len(EXPANDS_OVER_THE_LIMIT) == MAX_PASSWORD_LENGTH
    assert len(unicodedata.normalize("NFKC", EXPANDS_OVER_THE_LIMIT)) == MAX_PASSWORD_LENGTH + 2


def test_a_decomposed_password_that_registered_logs_in_however_it_is_typed(client, mailbox):
    for password in (LONG_DECOMPOSED, AT_THE_LIMIT):
        email = unique_email("nfd")
        register_and_verify(client, mailbox, email, password=password)
        assert login(client, email, password).status_code == 200
        assert login(client, email, unicodedata.normalize("NFC", password)).status_code == 200


def test_a_decomposed_password_set_by_a_reset_logs_in(client, mailbox):
    email = unique_email("nfd-reset")
    register_and_verify(client, mailbox, email)
    assert client.post(f"{API}/password-reset/", json={"email": email}).status_code == 200
    token = mailbox.wait_for(email, 2)[-1].token
    confirmed = client.post(
        f"{API}/password-reset-confirm/", json={"token": token, "new_password": LONG_DECOMPOSED}
    )
    assert confirmed.status_code == 200, confirmed.json
    assert login(client, email, LONG_DECOMPOSED).status_code == 200
    assert login(client, email, PASSWORD).status_code == 401


def test_a_password_over_the_limit_once_normalised_cannot_register_or_login(
    client, mailbox, audit_output
):
    email = unique_email("long")
    register_and_verify(client, mailbox, email)
    for password in (OVER_THE_LIMIT, EXPANDS_OVER_THE_LIMIT):
        refused = register(client, unique_email("long"), password)
        assert refused.status_code == 400
        assert "at most 128 characters" in " ".join(refused.json["errors"]["password"])
        assert login(client, email, password).status_code == 401
    # Refused for its length, before the account is looked up or a hash is computed.
    assert login_refusals(audit_output) == ["password_too_long", "password_too_long"]
