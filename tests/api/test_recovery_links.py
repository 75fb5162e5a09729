"""Recovery links an attacker cannot kill: the per-address mail cap, and when a link is superseded.

The attacker asks for resets and verification mails for the victim's address from many client
addresses (a trusted proxy says so). The per-address cap (IDP_MAILS_PER_ADDRESS) is decided before
a token is issued, per kind of mail; a request over it changes nothing. The link a user holds
keeps working until a newer one is actually handed to SMTP, used, or expired.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from idp.clock import utcnow
from idp.extensions import db
from idp.models import OneTimeToken, OutboxMail
from idp.services.registry import get_services
from tests.api.test_mail_outbox import back_off_elapses, outbox, send_pending, smtp_down
from tests.conftest import REDIS_URL
from tests.flows import API, PASSWORD, login, register, register_and_verify, settle, unique_email

NEW_PASSWORD = "Brand-New-Secret-9"
RESET_LINK = re.compile(r"/reset-password\?token=([\w-]+)")
CAP = 3
RESET = ("password-reset/", "Reset your password")
RESEND = ("resend-verification/", "Confirm your email address")


def capped_app(make_app: Any, **overrides: Any) -> Flask:
    settings = {"IDP_MAILS_PER_ADDRESS": f"{CAP} per hour", **overrides}
    return make_app(IDP_RATELIMIT_ENABLED=True, IDP_TRUSTED_PROXIES=1, **settings)


def ask(client: Any, path: str, email: str, source: int) -> Any:
    """A request from its own client address (under every per-address route limit)."""
    headers = {"X-Forwarded-For": f"203.0.{source // 250}.{source % 250}"}
    return client.post(f"{API}/{path}", json={"email": email}, headers=headers)


def tokens_of(app: Flask) -> list[tuple[Any, ...]]:
    """Every one-time token row, as plain values, in id order."""
    with app.app_context():
        rows = db.session.execute(
            select(
                OneTimeToken.id,
                OneTimeToken.token_hash,
                OneTimeToken.used_at,
                OneTimeToken.expires_at,
                OneTimeToken.mail_id,
            ).order_by(OneTimeToken.id)
        ).all()
        db.session.commit()
        return [tuple(row) for row in rows]


def use(client: Any, path: str, token: str) -> Any:
    if path == RESET[0]:
        body = {"token": token, "new_password": NEW_PASSWORD}
        return client.post(f"{API}/password-reset-confirm/", json=body)
    return client.post(f"{API}/verify-email/", json={"token": token})


def subjects(mailbox: Any, email: str, subject: str) -> list[Any]:
    return [mail for mail in mailbox.to(email) if mail.subject == subject]


@pytest.mark.parametrize(("path", "subject"), [RESET, RESEND], ids=["reset", "verification"])
def test_a_flood_past_the_cap_changes_nothing_and_the_victims_link_keeps_working(
    make_app, mailbox, path, subject
):
    app = capped_app(make_app)
    client = app.test_client()
    victim = unique_email("victim")
    if path == RESET[0]:
        register_and_verify(client, mailbox, victim)
    else:
        assert register(client, victim).status_code == 201  # its mail is not capped
    settle(client)
    # The attacker uses up the cap: each of these mails reaches the victim with a new link.
    for source in range(CAP):
        assert ask(client, path, victim, source).status_code == 200
    settle(client)
    held = subjects(mailbox, victim, subject)[-1].token  # the newest link in the mailbox
    before = tokens_of(app)
    answers = set()

    # Over the cap: the same answer, and nothing issued, spent or mailed.
    for source in range(100, 110):
        response = ask(client, path, victim, source)
        answers.add((response.status_code, str(response.json)))
    settle(client)
    stranger = ask(client, path, unique_email("nobody"), 200)
    assert answers == {(stranger.status_code, str(stranger.json))}
    assert tokens_of(app) == before
    # At most CAP more mails reached the victim (fewer when one got through while an older
    # one waited: the older is then dropped rather than sent with a dead link).
    expected = CAP if path == RESET[0] else CAP + 1  # + the registration mail
    assert 1 <= len(subjects(mailbox, victim, subject)) - (expected - CAP) <= CAP
    dropped = outbox(app, status="dropped", last_error="throttled")
    assert len(dropped) == 10 and all(row.payload is None for row in dropped)

    assert use(client, path, held).status_code == 200


def test_reset_requests_do_not_use_up_the_verification_budget_nor_the_reverse(make_app, mailbox):
    app = capped_app(make_app)
    client = app.test_client()
    victim = unique_email("victim")
    assert register(client, victim).status_code == 201  # unverified: both kinds apply
    settle(client)
    # One at a time: two mails of one kind in flight together may leave one superseded.
    for source in range(CAP + 2):
        assert ask(client, RESET[0], victim, source).status_code == 200
        settle(client)
    for source in range(50, 50 + CAP + 2):
        assert ask(client, RESEND[0], victim, source).status_code == 200
        settle(client)
    assert len(subjects(mailbox, victim, RESET[1])) == CAP
    assert len(subjects(mailbox, victim, RESEND[1])) == 1 + CAP
    # The newest link of each purpose works: the verification link, and the reset link beside
    # it ("did not register?"), which superseded those of the reset mails sent before it.
    newest = subjects(mailbox, victim, RESEND[1])[-1]
    (reset_token,) = RESET_LINK.findall(newest.text)
    assert use(client, RESEND[0], newest.token).status_code == 200
    assert use(client, RESET[0], reset_token).status_code == 200


def test_every_spelling_of_an_address_shares_one_budget(make_app, mailbox):
    app = capped_app(make_app)
    client = app.test_client()
    victim = unique_email("Victim")
    register_and_verify(client, mailbox, victim)
    spellings = [victim, victim.upper(), victim.lower(), f" {victim} ", victim.swapcase()]
    for source, spelling in enumerate(spellings):
        assert ask(client, RESET[0], spelling, source).status_code == 200
        settle(client)  # one at a time: two in flight together may leave one superseded
    assert len(subjects(mailbox, victim, RESET[1])) == CAP


def test_racing_resolvers_never_mail_past_the_cap(make_app, mailbox):
    # Two apps are two instances; their counters are shared through Redis when it is there,
    # through one process's memory otherwise (then one app stands for both).
    # Unique per run: Redis outlives a run, and a reused prefix would inherit its counters.
    shared = {"IDP_RATELIMIT_PREFIX": f"cap-race-{uuid.uuid4().hex}"}
    first = capped_app(make_app, **shared)
    second = capped_app(make_app, **shared) if REDIS_URL else first
    victim = unique_email("victim")
    register_and_verify(first.test_client(), mailbox, victim)
    # Queue ten requests without running them, then resolve them all at once from two sides.
    ids = []
    for _ in range(10):
        with first.app_context():
            ids.append(get_services().outbox.request("password_reset", victim, utcnow()).id)
            db.session.commit()
    barrier = threading.Barrier(len(ids))

    def resolve(app: Flask, mail_id: int) -> None:
        with app.app_context():
            barrier.wait()
            get_services().outbox.process(mail_id)
            db.session.remove()

    threads = [
        threading.Thread(target=resolve, args=(first if n % 2 else second, mail_id))
        for n, mail_id in enumerate(ids)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    rows = outbox(first, message="password_reset")
    # Exactly CAP were let through; of those, one whose newer sibling got to SMTP first is
    # dropped as superseded rather than sent with a dead link.
    assert sum(row.last_error == "throttled" for row in rows) == 10 - CAP
    let_through = [row for row in rows if row.last_error != "throttled"]
    assert {(row.status, row.last_error) for row in let_through} <= {
        ("sent", None),
        ("dropped", "superseded"),
    }
    sent = [row for row in let_through if row.status == "sent"]
    assert 1 <= len(sent) == len(subjects(mailbox, victim, RESET[1])) <= CAP


@dataclass
class HeldLink:
    """A victim holding a reset link, and a newer reset asked for while SMTP was down."""

    up: Flask
    client: Any
    victim: str
    held: str
    down: Flask


def held_link_and_an_undelivered_reset(make_app: Any, mailbox: Any, **down: Any) -> HeldLink:
    up = make_app()
    client = up.test_client()
    victim = unique_email("victim")
    register_and_verify(client, mailbox, victim)
    client.post(f"{API}/password-reset/", json={"email": victim})
    held = mailbox.wait_for(victim, 2)[-1].token
    smtp_is_down = smtp_down(make_app, **down)
    smtp_is_down.test_client().post(f"{API}/password-reset/", json={"email": victim})
    settle(smtp_is_down.test_client())
    return HeldLink(up, client, victim, held, smtp_is_down)


def test_a_link_keeps_working_while_its_replacement_is_undelivered(make_app, mailbox):
    case = held_link_and_an_undelivered_reset(make_app, mailbox)
    (waiting,) = outbox(case.down, status="pending")
    assert use(case.client, RESET[0], case.held).status_code == 200  # the held link works

    # Using it spent the waiting mail's link too: once SMTP is back that mail is not sent.
    back_off_elapses(case.up)
    assert send_pending(case.up) == "1 dropped\n"
    assert only(outbox(case.up, id=waiting.id)).last_error == "superseded"
    assert len(mailbox.to(case.victim)) == 2
    assert login(case.client, case.victim, NEW_PASSWORD).status_code == 200


def test_a_link_dies_once_its_replacement_is_handed_to_smtp(make_app, mailbox):
    case = held_link_and_an_undelivered_reset(make_app, mailbox)
    back_off_elapses(case.up)
    assert send_pending(case.up) == "1 sent\n"
    newest = mailbox.wait_for(case.victim, 3)[-1].token
    assert use(case.client, RESET[0], case.held).status_code == 400
    assert use(case.client, RESET[0], newest).status_code == 200


def test_a_mail_that_never_gets_through_leaves_the_held_link_working(make_app, mailbox):
    case = held_link_and_an_undelivered_reset(make_app, mailbox, IDP_MAIL_MAX_ATTEMPTS=1)
    statuses = [row.status for row in outbox(case.down, message="password_reset")]
    assert statuses == ["sent", "dead"]
    assert use(case.client, RESET[0], case.held).status_code == 200


def only(rows: list[OutboxMail]) -> OutboxMail:
    (row,) = rows
    return row


def test_a_capped_request_is_audited_as_denied(make_app, mailbox, audit_output):
    app = capped_app(make_app, IDP_MAILS_PER_ADDRESS="1 per hour")
    client = app.test_client()
    victim = unique_email("victim")
    register_and_verify(client, mailbox, victim)
    for source in range(2):
        ask(client, RESET[0], victim, source)
    settle(client)
    events = [
        (e["outcome"], e.get("reason") or "")
        for e in map(json.loads, audit_output.getvalue().splitlines())
        if e["event"] == "password_reset.requested"
    ]
    # Resolved side by side, either may take the one slot, and a refusal is recorded at once
    # while a success waits for its commit: the order is not fixed, the pair is.
    assert sorted(events) == [("denied", "throttled"), ("success", "")]
    assert PASSWORD not in audit_output.getvalue()


def test_a_retried_mail_with_one_superseded_link_is_dropped_not_delivered_last(make_app, mailbox):
    up = make_app()
    client = up.test_client()
    victim = unique_email("victim")
    assert register(client, victim).status_code == 201
    (registration,) = mailbox.wait_for(victim)
    # A resent verification mail (a verification link and a "did not register?" reset link)
    # waits for a retry...
    down = smtp_down(make_app)
    down.test_client().post(f"{API}/resend-verification/", json={"email": victim})
    settle(down.test_client())
    (waiting,) = outbox(down, status="pending")
    # ... while a reset mail gets through: its reset link supersedes the waiting mail's.
    client.post(f"{API}/password-reset/", json={"email": victim})
    (reset,) = subjects(mailbox, victim, RESET[1]) or mailbox.wait_for(victim, 2)[-1:]
    settle(client)

    back_off_elapses(up)
    assert send_pending(up) == "1 dropped\n"
    assert only(outbox(up, id=waiting.id)).last_error == "superseded"
    # The last mail the victim got is the reset mail, and every link the victim holds works.
    assert mailbox.to(victim)[-1].subject == RESET[1]
    assert use(client, RESEND[0], registration.token).status_code == 200
    assert use(client, RESET[0], reset.token).status_code == 200
