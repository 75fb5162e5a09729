"""The mail outbox as users and admins meet it: a mail survives an SMTP outage, goes out once.

Users act through HTTP; the admin through `flask mail send-pending` and `flask mail status`.
(The worker, `send-pending --loop`, and the listing `mail status` are tests/cli/test_mail_cli.py.)
"SMTP down" is a closed port, "SMTP hung" a port that accepts and never speaks, and refusals come
from a real aiosmtpd server told to answer 451 or 550. Several apps share one database: the one
that wrote a row with SMTP down, and the one (working SMTP, or another secret) that delivers it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from idp.clock import utcnow
from idp.extensions import db
from idp.models import OneTimeToken, OutboxMail, User
from idp.services.secret_tokens import digest
from tests.flows import (
    API,
    PASSWORD,
    login,
    register,
    register_and_verify,
    settle,
    unique_email,
)
from tests.support import RefusingMailbox, SilentServer, SMTPServer, free_port

NEW_PASSWORD = "Brand-New-Secret-9"
LINK = re.compile(r"http://frontend\.test/[\w/-]+\?token=[\w-]+")


# -- helpers ------------------------------------------------------------------------------------


def smtp_down(make_app: Any, **overrides: Any) -> Flask:
    """An app whose SMTP server is a closed port: every delivery is refused at connect."""
    return make_app(IDP_MAIL_PORT=free_port(), **overrides)


def outbox(app: Flask, **where: Any) -> list[OutboxMail]:
    """The outbox rows (detached, oldest first), optionally filtered by column values."""
    with app.app_context():
        query = select(OutboxMail).filter_by(**where).order_by(OutboxMail.id)
        rows = list(db.session.scalars(query))
        db.session.expunge_all()
        return rows


def only_row(app: Flask, **where: Any) -> OutboxMail:
    (row,) = outbox(app, **where)
    return row


def send_pending(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["mail", "send-pending", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def mail_status(app: Flask) -> str:
    result = app.test_cli_runner().invoke(args=["mail", "status"])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def back_off_elapses(app: Flask) -> None:
    """Time passes: every pending row's next attempt is due now."""
    with app.app_context():
        db.session.execute(
            update(OutboxMail)
            .where(OutboxMail.status == "pending")
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()


def request_reset(client: Any, email: str) -> Any:
    return client.post(f"{API}/password-reset/", json={"email": email})


def resend(client: Any, email: str) -> Any:
    return client.post(f"{API}/resend-verification/", json={"email": email})


def confirm_reset(client: Any, token: str) -> Any:
    return client.post(
        f"{API}/password-reset-confirm/", json={"token": token, "new_password": NEW_PASSWORD}
    )


def verify(client: Any, token: str) -> Any:
    return client.post(f"{API}/verify-email/", json={"token": token})


def audit_events(audit_output: Any, event: str) -> list[dict[str, Any]]:
    lines = audit_output.getvalue().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == event]


@pytest.fixture(scope="module")
def refusing_smtp() -> Iterator[SMTPServer]:
    server = SMTPServer(RefusingMailbox())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def refusing(refusing_smtp: SMTPServer) -> Iterator[SMTPServer]:
    """A real SMTP server that accepts until told to refuse; reset for every test."""
    mailbox = refusing_smtp.mailbox
    assert isinstance(mailbox, RefusingMailbox)
    mailbox.accept()
    mailbox.clear()
    yield refusing_smtp
    mailbox.accept()


# -- 1. an outage: the answer, the row, the delivery later, exactly once -------------------------


def test_a_sign_up_while_smtp_is_down_is_answered_and_its_mail_is_delivered_once_later(
    make_app, mailbox
):
    down = smtp_down(make_app)
    email = unique_email("outage")
    started = time.monotonic()
    response = register(down.test_client(), email)
    assert response.status_code == 201, response.json
    assert time.monotonic() - started < 2
    settle(down.test_client())

    # The account, its token and its mail were committed together; the delivery failed.
    with down.app_context():
        user = db.session.scalar(
            select(User).where(User.public_id == response.json["data"]["user_id"])
        )
        assert user is not None and not user.is_active
        (token_hash,) = db.session.scalars(
            select(OneTimeToken.token_hash).where(
                OneTimeToken.user_id == user.id, OneTimeToken.purpose == "verify_email"
            )
        )
    row = only_row(down)
    assert (row.message, row.recipient, row.status) == ("verify_email", email, "pending")
    assert row.attempts == 1
    assert row.last_error == "ConnectionRefusedError"  # the failure class, not its message
    assert row.payload  # sealed, still owed
    # The default back-off: a minute.
    assert utcnow() + timedelta(seconds=50) < row.next_attempt_at
    assert row.next_attempt_at <= utcnow() + timedelta(seconds=60)

    # SMTP is back, but the row is not due yet: the back-off is respected.
    up = make_app()
    assert send_pending(up) == "nothing due\n"
    assert mailbox.to(email) == []

    back_off_elapses(up)
    assert send_pending(up) == "1 sent\n"
    (mail,) = mailbox.wait_for(email)
    assert digest(mail.token) == token_hash
    client = up.test_client()
    assert verify(client, mail.token).status_code == 200
    assert login(client, email).status_code == 200

    # Nothing is sent twice.
    assert send_pending(up) == "nothing due\n"
    back_off_elapses(up)
    assert send_pending(up) == "nothing due\n"
    assert len(mailbox.to(email)) == 1
    row = only_row(up)
    assert (row.status, row.attempts, row.payload) == ("sent", 2, None)
    assert row.finished_at is not None


def test_a_hung_smtp_server_never_holds_the_answer_and_its_claimed_mail_is_not_sent_twice(
    make_app, mailbox
):
    up = make_app()
    with SilentServer() as silent:
        hung = make_app(IDP_MAIL_PORT=silent.port, IDP_MAIL_TIMEOUT=2)
        email = unique_email("hung")
        started = time.monotonic()
        response = register(hung.test_client(), email)
        answered = time.monotonic() - started
        assert response.status_code == 201

        # While the background attempt waits on the silent server, the row is claimed: a
        # sender with a working SMTP server leaves it alone.
        deadline = time.monotonic() + 1.5
        while only_row(hung).status != "sending" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert only_row(hung).status == "sending"
        assert send_pending(up) == "nothing due\n"
        assert only_row(hung).status == "sending"  # still mid-conversation meanwhile

        settle(hung.test_client())
        attempt_ended = time.monotonic() - started

    assert answered < 1.5  # well under the 2 s SMTP timeout: the answer never waited for it
    assert attempt_ended < 2 + 2.5  # IDP_MAIL_TIMEOUT bounds the background attempt
    row = only_row(hung)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "SMTPServerDisconnected")
    assert mailbox.to(email) == []


def test_a_mail_whose_verdict_never_came_is_in_doubt_and_never_sent_twice(make_app, refusing):
    """The connection dies after the message was handed over: the server may have it (here it
    does), so at most once means no retry."""
    refusing.mailbox.data_delay = 2.5
    app = make_app(IDP_MAIL_PORT=refusing.port, IDP_MAIL_TIMEOUT=1, IDP_MAIL_RETRY_DELAY=0)
    email = unique_email("late")
    assert register(app.test_client(), email).status_code == 201
    settle(app.test_client())

    row = only_row(app)
    assert (row.status, row.attempts) == ("sending", 1)
    assert row.last_error == "in_doubt_SMTPServerDisconnected"  # smtplib words a timeout so
    assert row.payload is None  # never sent again, so the link need not be kept
    refusing.mailbox.wait_for(email)  # the server did take it
    refusing.mailbox.data_delay = 0
    assert send_pending(app) == "nothing due\n"
    time.sleep(0.5)
    assert len(refusing.mailbox.to(email)) == 1


# -- 2. same-answer requests while SMTP is down --------------------------------------------------


def test_reset_and_resend_while_smtp_is_down_answer_alike_and_are_delivered_later(
    make_app, mailbox
):
    up = make_app()
    known = unique_email("known")
    register_and_verify(up.test_client(), mailbox, known)
    unverified = unique_email("unverified")
    assert register(up.test_client(), unverified).status_code == 201
    mailbox.wait_for(unverified)
    stranger, other_stranger = unique_email("stranger"), unique_email("stranger")

    down = smtp_down(make_app)
    client = down.test_client()
    resets = [request_reset(client, address) for address in (known, stranger)]
    resends = [resend(client, address) for address in (unverified, other_stranger, known)]
    for answers in (resets, resends):
        assert {a.status_code for a in answers} == {200}
        assert all(a.json == answers[0].json for a in answers)
    settle(client)

    # Known addresses: resolved, token issued and sealed, delivery failed. Unknown: dropped.
    reset_row = only_row(down, message="password_reset", recipient=known)
    resend_row = outbox(down, message="verify_email", recipient=unverified)[-1]
    for row in (reset_row, resend_row):
        assert (row.status, row.last_error) == ("pending", "ConnectionRefusedError")
        assert row.payload and row.expires_at is not None
    # A verified account gets no new verification link either.
    for address in (stranger, other_stranger, known):
        for row in outbox(down, recipient=address, status="dropped"):
            assert (row.last_error, row.payload, row.attempts) == ("no_recipient", None, 0)
    assert len(outbox(down, status="dropped")) == 3

    back_off_elapses(up)
    assert send_pending(up) == "2 sent\n"
    assert mailbox.to(stranger) == mailbox.to(other_stranger) == []
    reset_mail = mailbox.wait_for(known, 2)[-1]
    assert "reset-password?token=" in reset_mail.text
    verification = mailbox.wait_for(unverified, 2)[-1]

    client = up.test_client()
    assert confirm_reset(client, reset_mail.token).status_code == 200
    assert login(client, known, NEW_PASSWORD).status_code == 200
    assert verify(client, verification.token).status_code == 200
    assert login(client, unverified).status_code == 200
    assert send_pending(up) == "nothing due\n"


# -- 3. at most once -------------------------------------------------------------------------


def test_a_claimed_mail_whose_sender_died_is_never_sent_again(make_app, mailbox):
    down = smtp_down(make_app, IDP_MAIL_RETRY_DELAY=0)
    email = unique_email("claimed")
    register(down.test_client(), email)
    settle(down.test_client())
    # A sender claimed the row and died mid-conversation: did SMTP take the mail? Unknown.
    with down.app_context():
        db.session.execute(
            update(OutboxMail).values(status="sending", claimed_at=utcnow() - timedelta(minutes=10))
        )
        db.session.commit()

    up = make_app()
    assert send_pending(up) == "nothing due\n"
    assert send_pending(up, "--limit", "1") == "nothing due\n"
    assert mailbox.to(email) == []
    assert only_row(up).status == "sending"
    assert "in doubt (claimed, never reported back): 1" in mail_status(up)


# -- 4. giving up ----------------------------------------------------------------------------


def test_a_mail_that_keeps_failing_is_dead_after_max_attempts_logged_and_audited(
    make_app, caplog, audit_output
):
    down = smtp_down(make_app, IDP_MAIL_MAX_ATTEMPTS=3, IDP_MAIL_RETRY_DELAY=0)
    email = unique_email("doomed")
    register(down.test_client(), email)
    settle(down.test_client())  # attempt 1, right after the answer
    mail_id = only_row(down).id
    caplog.set_level(logging.WARNING, logger="idp.services.outbox")

    assert send_pending(down) == "1 pending\n"  # attempt 2
    assert send_pending(down) == "1 dead\n"  # attempt 3 of 3
    assert send_pending(down) == "nothing due\n"

    row = only_row(down)
    assert (row.status, row.attempts, row.last_error) == ("dead", 3, "ConnectionRefusedError")
    assert row.payload is None  # the live link is wiped
    assert row.finished_at is not None
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.name == "idp.services.outbox" and r.levelno == logging.ERROR
    ]
    assert errors == [f"mail verify_email (outbox {mail_id}) is dead: ConnectionRefusedError"]
    (dead,) = audit_events(audit_output, "mail.dead")
    assert dead["outcome"] == "failure"
    assert dead["actor"] == "cli"
    assert (dead["mail_id"], dead["message"], dead["reason"]) == (
        mail_id,
        "verify_email",
        "ConnectionRefusedError",
    )
    assert email not in audit_output.getvalue()

    status = mail_status(down).splitlines()
    assert "dead: 1" in status and "pending: 0" in status and "due now: 0" in status
    (listed,) = [line for line in status if line.startswith("dead #")]
    assert listed.startswith(
        f"dead #{mail_id}  verify_email  {email}  attempts=3  error=ConnectionRefusedError  "
    )


@pytest.mark.parametrize(
    ("step", "reply", "status", "error"),
    [
        ("data_reply", "550 5.7.1 Message refused", "dead", "smtp_550"),
        ("rcpt_reply", "550 5.1.1 No such user", "dead", "smtp_550"),
        ("data_reply", "451 4.3.0 Try again later", "pending", "smtp_451"),
        ("rcpt_reply", "450 4.2.1 Mailbox busy", "pending", "smtp_450"),
    ],
)
def test_a_permanent_refusal_is_dead_at_once_and_a_transient_one_is_retried(
    make_app, refusing, audit_output, step, reply, status, error
):
    setattr(refusing.mailbox, step, reply)
    app = make_app(IDP_MAIL_PORT=refusing.port)
    email = unique_email("refused")
    assert register(app.test_client(), email).status_code == 201
    settle(app.test_client())

    row = only_row(app)
    assert (row.status, row.attempts, row.last_error) == (status, 1, error)
    assert refusing.mailbox.to(email) == []
    dead_events = audit_events(audit_output, "mail.dead")
    assert [e["reason"] for e in dead_events] == ([error] if status == "dead" else [])

    # Once the server accepts again, only the transient refusal is delivered.
    refusing.mailbox.accept()
    back_off_elapses(app)
    assert send_pending(app) == ("1 sent\n" if status == "pending" else "nothing due\n")
    assert len(refusing.mailbox.to(email)) == (1 if status == "pending" else 0)


# -- 5. sealed at rest -----------------------------------------------------------------------


def everything_stored(app: Flask, database_url: str) -> bytes:
    """Every column of every row of every table, and on SQLite the database files themselves."""
    parts: list[bytes] = []
    with app.app_context():
        for table in db.metadata.sorted_tables:
            for row in db.session.execute(select(table)):
                for value in row:
                    parts.append(value if isinstance(value, bytes) else str(value).encode())
        db.session.commit()
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-journal"):
            if (file := path.with_name(path.name + suffix)).exists():
                parts.append(file.read_bytes())
    return b"\n".join(parts)


def test_no_token_or_link_is_ever_stored_in_clear(make_app, mailbox, database_url):
    up = make_app()
    owner = unique_email("owner")
    register_and_verify(up.test_client(), mailbox, owner)
    down = smtp_down(make_app)
    client = down.test_client()
    newcomer = unique_email("newcomer")
    register(client, newcomer)
    request_reset(client, owner)
    resend(client, newcomer)
    settle(client)
    assert len(outbox(down, status="pending", attempts=1)) == 3
    while_queued = everything_stored(down, database_url)

    back_off_elapses(up)
    assert send_pending(up) == "3 sent\n"
    mails = [*mailbox.wait_for(owner, 2), *mailbox.wait_for(newcomer, 2)]
    tokens = [mail.token for mail in mails]
    links = [LINK.search(mail.text).group(0) for mail in mails]
    after_delivery = everything_stored(up, database_url)

    for stored in (while_queued, after_delivery):
        leaked = [secret for secret in tokens + links if secret.encode() in stored]
        assert leaked == []
    # What the database holds of each token is its SHA-256.
    with up.app_context():
        hashes = set(db.session.scalars(select(OneTimeToken.token_hash)))
    assert {digest(token) for token in tokens} <= hashes
    # Delivered rows keep no payload at all.
    assert {row.payload for row in outbox(up, status="sent")} == {None}


def test_a_sealed_mail_moved_to_another_row_or_address_is_never_sent(make_app, mailbox):
    up = make_app()
    victim, attacker = unique_email("victim"), unique_email("attacker")
    register_and_verify(up.test_client(), mailbox, victim)
    register_and_verify(up.test_client(), mailbox, attacker)
    down = smtp_down(make_app)
    client = down.test_client()
    for address in (victim, victim, attacker):
        request_reset(client, address)
    settle(client)
    first, second = outbox(down, message="password_reset", recipient=victim)
    own = only_row(down, message="password_reset", recipient=attacker)

    # Someone with write access to the table redirects the victim's reset links to themselves:
    # one row's address rewritten, and another row's sealed payload copied into their own row.
    with down.app_context():
        db.session.execute(
            update(OutboxMail).where(OutboxMail.id == first.id).values(recipient=attacker)
        )
        db.session.execute(
            update(OutboxMail).where(OutboxMail.id == own.id).values(payload=second.payload)
        )
        db.session.commit()

    back_off_elapses(up)
    assert send_pending(up) == "2 dead, 1 sent\n"
    assert len(mailbox.to(attacker)) == 1  # only their own verification mail, long ago
    assert len(mailbox.to(victim)) == 2  # their verification mail and the untouched reset
    for row_id in (first.id, own.id):
        row = only_row(up, id=row_id)
        assert (row.status, row.last_error, row.payload) == ("dead", "unsealable", None)


def test_a_mail_sealed_under_another_secret_key_is_dead_not_a_crash(make_app, mailbox):
    down = smtp_down(make_app)
    email = unique_email("rekeyed")
    register(down.test_client(), email)
    settle(down.test_client())

    rekeyed = make_app(IDP_SECRET_KEY="another-secret-key-entirely")
    back_off_elapses(rekeyed)
    assert send_pending(rekeyed) == "1 dead\n"
    row = only_row(rekeyed)
    assert (row.status, row.last_error, row.payload) == ("dead", "unsealable", None)
    assert mailbox.to(email) == []


# -- 6. expired --------------------------------------------------------------------------------


def test_a_mail_whose_link_expired_unsent_is_dead_not_sent(make_app, mailbox):
    down = smtp_down(make_app)
    email = unique_email("late")
    register(down.test_client(), email)
    settle(down.test_client())
    with down.app_context():
        db.session.execute(update(OutboxMail).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()

    up = make_app()
    back_off_elapses(up)
    assert send_pending(up) == "1 dead\n"
    row = only_row(up)
    assert (row.status, row.last_error, row.payload) == ("dead", "expired", None)
    assert mailbox.to(email) == []


# -- 7. the per-address mail limit ---------------------------------------------------------------


def test_the_per_address_mail_limit_drops_the_third_reset_silently(make_app, mailbox):
    email = unique_email("busy")
    register_and_verify(make_app().test_client(), mailbox, email)
    limited = make_app(
        IDP_RATELIMIT_ENABLED=True,
        IDP_RATELIMIT_AUTH="100 per minute",
        IDP_MAILS_PER_ADDRESS="2 per hour",
    )
    client = limited.test_client()
    # Every spelling of the address counts against the same limit.
    answers = []
    for spelling in (email, email.upper(), email):
        answers.append(request_reset(client, spelling))
        settle(client)  # one at a time: two in flight together may leave one superseded
    assert {a.status_code for a in answers} == {200}
    assert all(a.json == answers[0].json for a in answers)

    rows = outbox(limited, message="password_reset")
    assert sorted(row.status for row in rows) == ["dropped", "sent", "sent"]
    (dropped,) = [row for row in rows if row.status == "dropped"]
    assert (dropped.last_error, dropped.payload) == ("throttled", None)
    assert len(mailbox.to(email)) == 1 + 2  # verification, then two resets


# -- 10. registration privacy --------------------------------------------------------------------


def test_a_taken_address_in_privacy_mode_mails_its_owner_once_smtp_is_back(make_app, mailbox):
    down = smtp_down(make_app, IDP_REGISTRATION_PRIVACY=True)
    client = down.test_client()
    owner = unique_email("Owner")
    first = register(client, owner)
    again = register(client, owner.upper(), password="Another-Horse-8")
    assert first.status_code == again.status_code == 201
    assert first.json["message"] == again.json["message"]
    settle(client)

    # The request for the address as typed resolved to the owner's own spelling, then failed.
    row = only_row(down, message="account_exists")
    assert (row.recipient, row.status, row.attempts) == (owner, "pending", 1)
    assert row.payload and row.expires_at is None

    up = make_app()
    back_off_elapses(up)
    assert send_pending(up) == "2 sent\n"
    subjects = sorted(mail.subject for mail in mailbox.wait_for(owner, 2))
    assert subjects == ["Confirm your email address", "You already have an account"]
    verification = next(m for m in mailbox.to(owner) if "Confirm" in m.subject)
    assert verify(up.test_client(), verification.token).status_code == 200
    assert login(up.test_client(), owner, PASSWORD).status_code == 200
