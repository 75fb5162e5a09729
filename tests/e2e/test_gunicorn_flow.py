"""End to end: real gunicorn (2 sync workers), real SMTP, real database, over HTTP."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.e2e.api import Api, status_is, unique_email
from tests.e2e.conftest import (
    FRONTEND_URL,
    race,
    rotate_keys,
    spellings_of_one_new_address,
)
from tests.flows import PASSWORD
from tests.support import Mailbox, ReceivedMail, free_port

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "Battery-Staple-42"


def last_mail(mailbox: Mailbox, email: str, count: int) -> ReceivedMail:
    mails = mailbox.wait_for(email, count=count, timeout=10)
    assert len(mails) == count, [m.subject for m in mails]
    return mails[-1]


def link_token(mail: ReceivedMail, page: str) -> str:
    link = f"{FRONTEND_URL}/{page}?token={mail.token}"
    assert link in mail.text, mail.text
    assert link in mail.part("text/html")
    return mail.token


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def verify_with_pyjwt(base: str, token: str) -> dict[str, Any]:
    """What a relying app does: fetch our JWKS, pick the key by kid, check everything."""
    jwks_client = jwt.PyJWKClient(f"{base}/.well-known/jwks.json", cache_jwk_set=False)
    signing_key = jwks_client.get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        signing_key.key,
        algorithms=["RS256"],
        audience=base,
        issuer=base,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )


def registered_and_verified(api: Api, mailbox: Mailbox, email: str) -> str:
    response = api.register(email)
    assert response.status_code == 201, response.text
    token = link_token(last_mail(mailbox, email, 1), "verify-email")
    verified = api.post("verify-email", {"token": token})
    assert verified.status_code == 200, verified.text
    return response.json()["data"]["user_id"]


# -- the whole journey -------------------------------------------------------------------------


def test_full_user_journey(server, smtp):
    api = Api(server)
    mailbox = smtp.mailbox
    email = unique_email("journey")
    base = server.url

    # Register; the verification mail arrives through real SMTP with a frontend link.
    registered = api.register(email)
    assert registered.status_code == 201, registered.text
    user_id = registered.json()["data"]["user_id"]
    assert api.login(email).status_code == 403  # right password, address not verified yet
    verify_link_token = link_token(last_mail(mailbox, email, 1), "verify-email")
    verified = api.post("verify-email", {"token": verify_link_token})
    assert verified.status_code == 200, verified.text
    spent = api.post("verify-email", {"token": verify_link_token})
    assert spent.status_code == 400, spent.text
    assert spent.json()["code"] == "invalid_token"

    # Log in; the access token verifies here and with PyJWT against our JWKS.
    logged_in = api.login(email)
    assert logged_in.status_code == 200, logged_in.text
    data = logged_in.json()["data"]
    access, refresh = data["token"], data["refresh_token"]
    assert data["user"]["id"] == user_id
    assert data["user"]["email_verified"] is True
    checked = api.verify_token(access)
    assert checked.status_code == 200, checked.text
    assert checked.json()["data"]["user"]["id"] == user_id
    claims = verify_with_pyjwt(base, access)
    assert claims["sub"] == user_id
    assert claims["iss"] == base
    assert claims["aud"] == base

    # Refresh: a new pair; replaying the spent refresh token kills the whole family.
    refreshed = api.post("token/refresh", {"refresh_token": refresh})
    assert refreshed.status_code == 200, refreshed.text
    pair = refreshed.json()["data"]
    assert pair["refresh_token"] != refresh
    assert pair["token"] != access
    assert api.verify_token(pair["token"]).status_code == 200
    assert verify_with_pyjwt(base, pair["token"])["sub"] == user_id
    replay = api.post("token/refresh", {"refresh_token": refresh})
    assert replay.status_code == 401, replay.text
    dead = api.post("token/refresh", {"refresh_token": pair["refresh_token"]})
    assert dead.status_code == 401, dead.text
    assert api.verify_token(pair["token"]).status_code == 401
    assert api.verify_token(access).status_code == 401

    # Logout: the token is refused by every worker afterwards.
    session = api.login(email).json()["data"]
    server.on_every_worker(
        lambda params: api.verify_token(session["token"], params=params), status_is(200)
    )
    logout = api.post(
        "logout",
        {"refresh_token": session["refresh_token"]},
        headers={"Authorization": f"Bearer {session['token']}"},
    )
    assert logout.status_code == 200, logout.text
    server.on_every_worker(
        lambda params: api.verify_token(session["token"], params=params), status_is(401)
    )
    again = api.post("token/refresh", {"refresh_token": session["refresh_token"]})
    assert again.status_code == 401

    # Password reset: mail, confirm; the old password and old sessions stop working.
    other_session = api.login(email).json()["data"]
    reset = api.post("password-reset", {"email": email})
    assert reset.status_code == 200, reset.text
    reset_token = link_token(last_mail(mailbox, email, 2), "reset-password")
    confirmed = api.post(
        "password-reset-confirm", {"token": reset_token, "new_password": NEW_PASSWORD}
    )
    assert confirmed.status_code == 200, confirmed.text
    assert api.login(email, PASSWORD).status_code == 401
    new_login = api.login(email, NEW_PASSWORD)
    assert new_login.status_code == 200, new_login.text
    assert api.verify_token(new_login.json()["data"]["token"]).status_code == 200
    assert api.verify_token(other_session["token"]).status_code == 401
    stale = api.post("token/refresh", {"refresh_token": other_session["refresh_token"]})
    assert stale.status_code == 401

    # The reset link works once.
    reused = api.post(
        "password-reset-confirm", {"token": reset_token, "new_password": "Another-Horse-99"}
    )
    assert reused.status_code == 400, reused.text
    assert reused.json()["code"] == "invalid_token"
    assert api.login(email, "Another-Horse-99").status_code == 401
    assert api.login(email, NEW_PASSWORD).status_code == 200
    assert "Traceback" not in server.error_log.read_text()


# -- a login racing a password reset ---------------------------------------------------------


def test_a_login_with_the_old_password_never_outlives_a_reset_it_overlaps(launch, smtp):
    # Hashes of tens of milliseconds, so that logins with the old password are mid-check when
    # the reset commits: none of them may leave a session the reset did not end.
    server = launch(IDP_ARGON2_TIME_COST="2", IDP_ARGON2_MEMORY_COST="32768")
    api = Api(server)
    email = unique_email("reset-race")
    registered_and_verified(api, smtp.mailbox, email)
    assert api.reset(email).status_code == 200
    reset_token = link_token(last_mail(smtp.mailbox, email, 2), "reset-password")
    stop = threading.Event()
    sessions: list[dict[str, Any]] = []
    refused = 0

    def keep_logging_in() -> None:
        nonlocal refused
        while not stop.is_set():
            response = api.login(email)
            if response.status_code == 200:
                sessions.append(response.json()["data"])
            else:
                assert response.status_code == 401, response.text
                refused += 1

    with ThreadPoolExecutor(4) as pool:
        runs = [pool.submit(keep_logging_in) for _ in range(4)]
        time.sleep(0.5)
        confirmed = api.post(
            "password-reset-confirm", {"token": reset_token, "new_password": NEW_PASSWORD}
        )
        time.sleep(0.3)
        stop.set()
        for run in runs:
            run.result()

    assert confirmed.status_code == 200, confirmed.text
    assert sessions and refused, (len(sessions), refused)
    survivors = [s for s in sessions if api.verify_token(s["token"]).status_code != 401]
    survivors += [s for s in sessions if api.refresh(s["refresh_token"]).status_code != 401]
    assert survivors == [], f"{len(survivors)} of {len(sessions)} logins outlived the reset"
    assert api.login(email).status_code == 401
    assert api.login(email, NEW_PASSWORD).status_code == 200
    assert "Traceback" not in server.error_log.read_text()


# -- double clicks -----------------------------------------------------------------------------


def test_a_double_clicked_logout_is_never_a_server_error(server, smtp):
    api = Api(server)
    email = unique_email("double-logout")
    registered_and_verified(api, smtp.mailbox, email)
    for _ in range(5):
        session = api.login(email).json()["data"]
        results = race([lambda s=session: api.logout(s) for _ in range(2)])
        statuses = sorted(getattr(r, "status_code", repr(r)) for r in results)
        # Both revoke the same token: the second finds it revoked or already on the denylist.
        assert statuses in ([200, 200], [200, 401]), [getattr(r, "text", r) for r in results]
        assert api.verify_token(session["token"]).status_code == 401
    assert "Traceback" not in server.error_log.read_text()


@pytest.mark.parametrize("flow", ["verify-email", "password-reset-confirm"])
def test_two_links_of_one_account_used_at_once_give_one_success(server, smtp, flow):
    api = Api(server)
    for round_ in range(4):
        email = unique_email(f"two-links-{round_}")
        if flow == "verify-email":
            assert api.register(email).status_code == 201
            first = last_mail(smtp.mailbox, email, 1).token
            # Only the newest link works; racing it with the spent one must still be clean.
            assert api.post("resend-verification", {"email": email}).status_code == 200
            second = last_mail(smtp.mailbox, email, 2).token
            bodies = [{"token": t} for t in (first, second)]
        else:
            registered_and_verified(api, smtp.mailbox, email)
            assert api.reset(email).status_code == 200
            first = last_mail(smtp.mailbox, email, 2).token
            assert api.reset(email).status_code == 200
            second = last_mail(smtp.mailbox, email, 3).token
            bodies = [{"token": t, "new_password": NEW_PASSWORD} for t in (first, second)]
        results = race([lambda b=body: api.post(flow, b) for body in bodies])
        statuses = [getattr(r, "status_code", repr(r)) for r in results]
        # The older link dies when the newer mail's hand-over commits, a moment after the mail
        # arrives; raced that soon, either link may be the one that wins. Exactly one does, and
        # the other is refused cleanly (the older link's death is tested in tests/api).
        assert sorted(statuses) == [200, 400], [getattr(r, "text", r) for r in results]
        refused = results[statuses.index(400)]
        assert refused.json()["code"] == "invalid_token"
    assert "Traceback" not in server.error_log.read_text()


# -- racing sign-ups -------------------------------------------------------------------------


def test_concurrent_registrations_of_one_address_create_one_account(server, smtp):
    api = Api(server)
    spellings = spellings_of_one_new_address(5)
    results = race([lambda address=address: api.register(address) for address in spellings])

    statuses = sorted((getattr(r, "status_code", repr(r)) for r in results), key=str)
    assert statuses == [201, 409, 409, 409, 409], [getattr(r, "text", r) for r in results]
    for response in results:
        if response.status_code == 409:
            assert response.json()["success"] is False
            assert response.json()["code"] == "email_exists"
    # One account, so one verification mail (sent after the answer: wait for it, then make
    # sure no second one follows).
    smtp.mailbox.wait_for(spellings[0])
    time.sleep(0.5)
    assert len(smtp.mailbox.to(spellings[0])) == 1
    assert "Traceback" not in server.error_log.read_text()


# -- key rotation ----------------------------------------------------------------------------


def test_key_rotation_reaches_every_worker_and_old_tokens_keep_verifying(launch, smtp):
    server = launch()
    api = Api(server)
    email = unique_email("rotation")
    keys_dir = server.env["IDP_KEYS_DIR"]

    # Both workers started on an empty keys folder at once: still exactly one key.
    pems = sorted(p.name for p in Path(keys_dir).glob("*.pem"))
    assert len(pems) == 1, pems
    registered_and_verified(api, smtp.mailbox, email)
    before = api.login(email).json()["data"]["token"]
    old_kid = kid_of(before)
    assert pems == [f"{old_kid}.pem"]

    new_kid = rotate_keys(server.env)
    assert new_kid
    assert new_kid != old_kid
    rotated_at = time.monotonic()

    # Within 10 s every worker signs with the new key, and none goes back to the old one.
    switched: set[str] = set()
    deadline = rotated_at + 10
    probes = itertools.count()
    with ThreadPoolExecutor(max_workers=2) as pool:
        while len(switched) < 2:
            assert time.monotonic() < deadline, f"only workers {switched} switched in 10 s"
            tags = [f"rot{next(probes)}" for _ in range(2)]
            responses = pool.map(lambda tag: api.login(email, params={"probe": tag}), tags)
            for tag, response in zip(tags, responses, strict=True):
                assert response.status_code == 200, response.text
                kid = kid_of(response.json()["data"]["token"])
                assert kid in (old_kid, new_kid)
                pid = server.served_by(tag)
                if kid == new_kid:
                    switched.add(pid)
                else:
                    assert pid not in switched, "a worker went back to the old key"
            time.sleep(0.1)
    assert switched == server.worker_pids()

    # The pre-rotation token still verifies everywhere, and JWKS everywhere lists both keys.
    server.on_every_worker(lambda p: api.verify_token(before, params=p), status_is(200))

    def both_kids(response: Any) -> None:
        assert response.status_code == 200
        assert {key["kid"] for key in response.json()["keys"]} == {old_kid, new_kid}

    server.on_every_worker(lambda p: api.jwks(params=p), both_kids)
    assert verify_with_pyjwt(server.url, before)["iss"] == server.url
    after = api.login(email).json()["data"]["token"]
    assert kid_of(after) == new_kid
    assert (
        verify_with_pyjwt(server.url, after)["sub"] == verify_with_pyjwt(server.url, before)["sub"]
    )


# -- SMTP down -------------------------------------------------------------------------------


def test_registration_survives_smtp_outage_and_resend_delivers_later(launch, smtp):
    closed_port = free_port()  # nothing listens here
    server = launch(smtp_port=closed_port)
    api = Api(server)
    email = unique_email("outage")

    registered = api.register(email)

    assert registered.status_code == 201, registered.text
    assert smtp.mailbox.to(email) == []
    not_verified = api.login(email)
    assert not_verified.status_code == 403, not_verified.text
    assert not_verified.json()["code"] == "email_not_verified"
    assert api.login(email, "Wrong-Password-1").status_code == 401
    # Asking again while mail is still down: the same polite answer, no error.
    assert api.post("resend-verification", {"email": email}).status_code == 200
    # Delivery runs after the answer, so its log line may come a moment later.
    log = server.wait_for_log("not delivered (ConnectionRefusedError)")
    assert "token=" not in log  # the link is a secret, even in the log

    # Mail is back: restart pointing at the live SMTP server.
    server.restart(IDP_MAIL_PORT=str(smtp.port))
    assert api.login(email).status_code == 403
    resent = api.post("resend-verification", {"email": email})
    assert resent.status_code == 200, resent.text

    token = link_token(last_mail(smtp.mailbox, email, 1), "verify-email")
    verified = api.post("verify-email", {"token": token})
    assert verified.status_code == 200, verified.text
    logged_in = api.login(email)
    assert logged_in.status_code == 200, logged_in.text
    assert api.verify_token(logged_in.json()["data"]["token"]).status_code == 200
