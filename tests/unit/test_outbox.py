"""The outbox underneath: sealing, the back-off schedule, claiming and resolving, with a set clock.

Rows are processed through the app's own Outbox (`process(id, now)`, `send_pending(now)`), the
call the background job and `mail send-pending` make, against a real database and SMTP server.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from idp.clock import utcnow
from idp.extensions import db
from idp.models import OneTimeToken, OutboxMail, User
from idp.services.mail import PASSWORD_RESET_MAIL, VERIFY_EMAIL_MAIL
from idp.services.outbox import Outbox
from idp.services.registry import OUTBOX_SEAL_PURPOSE, get_services
from idp.services.sealing import Sealer, Unsealable
from idp.services.secret_tokens import digest
from tests.flows import register, settle, unique_email
from tests.support import free_port

SECRET = "a-secret-key-for-the-sealing-tests-only"
BINDING = "password_reset\nada@example.com"
VALUE = {"first_name": "Zoë", "token": "live-token-abc123", "extra": [1, None]}


# -- Sealer --------------------------------------------------------------------------------------


def test_a_sealed_value_opens_again_and_shows_nothing_of_itself():
    sealed = Sealer(SECRET, OUTBOX_SEAL_PURPOSE).seal(VALUE, BINDING)
    # Another instance (another process) with the same secret derives the same key.
    assert Sealer(SECRET, OUTBOX_SEAL_PURPOSE).open(sealed, BINDING) == VALUE
    assert b"live-token-abc123" not in sealed
    assert "Zoë".encode() not in sealed
    # A fresh nonce every time: equal values never seal to equal bytes.
    assert Sealer(SECRET, OUTBOX_SEAL_PURPOSE).seal(VALUE, BINDING) != sealed


@pytest.mark.parametrize(
    "binding",
    [
        "password_reset\neve@example.com",  # moved to another address
        "verify_email\nada@example.com",  # moved to another kind of mail
        "password_reset\nADA@example.com",  # the address exactly as sealed, not a spelling of it
        "",
    ],
)
def test_a_sealed_value_opens_only_under_its_own_binding(binding):
    sealer = Sealer(SECRET, OUTBOX_SEAL_PURPOSE)
    with pytest.raises(Unsealable):
        sealer.open(sealer.seal(VALUE, BINDING), binding)


def test_any_changed_or_missing_byte_makes_it_unsealable():
    sealer = Sealer(SECRET, OUTBOX_SEAL_PURPOSE)
    sealed = sealer.seal(VALUE, BINDING)
    for position in range(len(sealed)):  # the nonce, the ciphertext and the tag alike
        tampered = bytearray(sealed)
        tampered[position] ^= 0x01
        with pytest.raises(Unsealable):
            sealer.open(bytes(tampered), BINDING)
    for cut in (sealed[:-1], sealed[:12], sealed[:5], b""):
        with pytest.raises(Unsealable):
            sealer.open(cut, BINDING)


def test_another_secret_or_purpose_cannot_open_it():
    sealed = Sealer(SECRET, OUTBOX_SEAL_PURPOSE).seal(VALUE, BINDING)
    for other in (Sealer(SECRET + "x", OUTBOX_SEAL_PURPOSE), Sealer(SECRET, "another purpose")):
        with pytest.raises(Unsealable):
            other.open(sealed, BINDING)


# -- the outbox --------------------------------------------------------------------------------


def queue(to: str, now: datetime, **kwargs: Any) -> int:
    """Stage and commit a verification mail for `to`; return its id (in an app context)."""
    context = {"first_name": "Ada", "token": f"token-for-{to}"}
    row = get_services().outbox.enqueue(VERIFY_EMAIL_MAIL, to, context, now, **kwargs)
    db.session.commit()
    return row.id


def row_of(mail_id: int) -> OutboxMail:
    db.session.expire_all()
    row = db.session.get(OutboxMail, mail_id)
    assert row is not None
    return row


def test_retries_back_off_doubling_up_to_an_hour_then_the_mail_is_dead(make_app, audit_output):
    app = make_app(IDP_MAIL_PORT=free_port(), IDP_MAIL_MAX_ATTEMPTS=9, IDP_MAIL_RETRY_DELAY=60)
    with app.app_context():
        outbox = get_services().outbox
        now = utcnow()
        mail_id = queue("ada@example.com", now)
        assert outbox.process(mail_id, now) == "pending"  # attempt 1
        delays, outcomes = [], []
        for _ in range(8):  # attempts 2 to 9
            due = row_of(mail_id).next_attempt_at
            delays.append(int((due - now).total_seconds()))
            assert outbox.send_pending(due - timedelta(seconds=1)) == Counter()
            now = due
            outcomes += outbox.send_pending(now).elements()
        row = row_of(mail_id)
        assert (row.status, row.attempts) == ("dead", 9)
        # send_pending's clock starts at `now` and runs on with the real one through a batch.
        assert timedelta(0) <= row.finished_at - now < timedelta(seconds=5)
        assert outbox.send_pending(now + timedelta(days=1)) == Counter()
    assert delays == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert outcomes == ["pending"] * 7 + ["dead"]
    assert '"event":"mail.dead"' in audit_output.getvalue()


def test_a_mail_not_yet_due_is_left_alone_even_when_asked_for_by_id(app, mailbox):
    with app.app_context():
        now = utcnow()
        mail_id = queue("early@example.com", now + timedelta(minutes=1))
        assert get_services().outbox.process(mail_id, now) == "pending"
        row = row_of(mail_id)
        assert (row.status, row.attempts, row.claimed_at) == ("pending", 0, None)
    assert mailbox.to("early@example.com") == []


@pytest.mark.parametrize("status", ["sending", "sent", "dead", "dropped"])
def test_a_claimed_or_finished_mail_is_never_sent_again(app, mailbox, status):
    with app.app_context():
        now = utcnow()
        mail_id = queue("once@example.com", now)  # a sealed payload that would open fine
        db.session.execute(update(OutboxMail).values(status=status, attempts=1))
        db.session.commit()
        outbox = get_services().outbox
        assert outbox.process(mail_id, now) == status
        assert outbox.send_pending(now) == Counter()
        assert (row_of(mail_id).status, row_of(mail_id).attempts) == (status, 1)
    assert mailbox.to("once@example.com") == []


def one_sent(outcomes: list[str]) -> bool:
    """One sender delivered; the other found the mail claimed, in flight, or already sent.

    A sender that reads the row after the other has finished reports its status, "sent", without
    sending: so both may say "sent", and the callers count the mails that actually arrived.
    """
    winner, loser = sorted(outcomes, key=lambda outcome: outcome == "sent", reverse=True)
    return winner == "sent" and loser in ("pending", "sending", "sent")


def race(app: Flask, job: Any, *args: Any) -> list[Any]:
    """Run job(outbox, *args) in two threads at once, each in its own application context."""
    barrier = threading.Barrier(2, timeout=10)

    def sender() -> Any:
        with app.app_context():
            barrier.wait()
            return job(get_services().outbox, *args)

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(sender) for _ in range(2)]
        return [future.result(timeout=30) for future in futures]


def test_two_senders_racing_for_one_mail_deliver_it_once(app, mailbox):
    addresses = [unique_email("raced") for _ in range(5)]
    with app.app_context():
        ids = [queue(address, utcnow()) for address in addresses]

    for mail_id, address in zip(ids, addresses, strict=True):
        outcomes = race(app, Outbox.process, mail_id)
        assert one_sent(outcomes), outcomes
        assert len(mailbox.to(address)) == 1
    with app.app_context():
        assert {row_of(mail_id).attempts for mail_id in ids} == {1}


def test_two_senders_racing_to_resolve_one_request_issue_one_token_and_one_mail(
    app, client, mailbox
):
    email = unique_email("requested")
    register(client, email)
    settle(client)
    with app.app_context():
        mail_id = get_services().outbox.request(PASSWORD_RESET_MAIL, email, utcnow()).id
        db.session.commit()

    outcomes = race(app, Outbox.process, mail_id)
    assert one_sent(outcomes), outcomes

    (mail,) = [m for m in mailbox.wait_for(email, 2) if m.subject == "Reset your password"]
    assert len(mailbox.to(email)) == 2  # the verification mail, then one reset mail
    with app.app_context():
        hashes = db.session.scalars(
            select(OneTimeToken.token_hash).where(OneTimeToken.mail_id == mail_id)
        ).all()
    assert hashes == [digest(mail.token)]  # the loser's token was rolled back with its resolve


def test_a_request_is_written_without_a_look_up_and_resolved_to_the_account_later(
    app, client, mailbox
):
    email = unique_email("Typed")
    register(client, email)
    settle(client)
    with app.app_context():
        outbox = get_services().outbox
        now = utcnow()
        row = outbox.request(PASSWORD_RESET_MAIL, email.upper(), now)
        db.session.commit()
        # Nothing about the account yet: the address as typed, no payload, no token.
        assert (row.status, row.recipient, row.payload, row.attempts) == (
            "requested",
            email.upper(),
            None,
            0,
        )
        # The account's tokens are those its registration mailed (verification, and reset).
        assert db.session.scalar(select(func.count()).select_from(OneTimeToken)) == 2
        tokens = select(OneTimeToken).where(OneTimeToken.mail_id == row.id)

        assert outbox.process(row.id, now) == "sent"
        row = row_of(row.id)
        assert (row.status, row.recipient, row.payload) == ("sent", email, None)
        assert row.expires_at == now + timedelta(hours=24)
        (token,) = db.session.scalars(tokens).all()
        assert token.user_id == db.session.scalar(select(User.id).where(User.email == email))
    (mail,) = [m for m in mailbox.to(email) if m.subject == "Reset your password"]
    assert digest(mail.token) == token.token_hash


def test_a_request_for_an_address_without_an_account_is_dropped(app, mailbox):
    with app.app_context():
        outbox = get_services().outbox
        now = utcnow()
        row = outbox.request(PASSWORD_RESET_MAIL, "nobody@example.com", now)
        db.session.commit()
        assert outbox.process(row.id, now) == "dropped"
        row = row_of(row.id)
        assert (row.last_error, row.finished_at, row.payload, row.attempts) == (
            "no_recipient",
            now,
            None,
            0,
        )
        assert db.session.scalars(select(OneTimeToken)).all() == []
    assert mailbox.to("nobody@example.com") == []


def test_a_request_for_a_mail_nobody_resolves_is_refused(app):
    with app.app_context(), pytest.raises(ValueError, match="no resolver"):
        get_services().outbox.request("newsletter", "ada@example.com", utcnow())


def test_a_mail_past_its_expiry_is_dead_and_one_before_it_is_sent(app, mailbox):
    with app.app_context():
        outbox = get_services().outbox
        now = utcnow()
        late = queue("late@example.com", now, expires_at=now + timedelta(hours=1))
        timely = queue("timely@example.com", now, expires_at=now + timedelta(hours=3))
        later = now + timedelta(hours=2)
        assert outbox.send_pending(later) == Counter({"dead": 1, "sent": 1})
        assert (row_of(late).status, row_of(late).last_error) == ("dead", "expired")
        assert row_of(timely).status == "sent"
    assert mailbox.to("late@example.com") == []
    assert len(mailbox.to("timely@example.com")) == 1
