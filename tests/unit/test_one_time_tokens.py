"""One-time tokens underneath: when a newer mail's hand-over spends an older mail's links.

The rule: the last mail a user receives never carries a dead link. A sibling mail that was
delivered before this one was claimed arrives first, so its links are spent; one whose flight
overlapped this one's (still sending, or handed over after this one was claimed) may arrive
last, so it keeps its links.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from idp.clock import utcnow
from idp.extensions import db
from idp.models import OneTimeToken, OutboxMail, User
from idp.services import one_time_tokens as ott
from idp.services.registry import get_services
from tests.flows import register, settle, unique_email

T0 = utcnow()


def reset_mail(user: User, now) -> tuple[int, int]:
    """A reset mail row carrying a fresh reset token; returns (mail id, token id)."""
    issued = ott.issue_one_time_token(user, ott.PASSWORD_RESET, now)
    row = get_services().outbox.enqueue(
        "password_reset", user.email, {"token": issued.raw}, now, tokens=(issued.row,)
    )
    db.session.commit()
    return row.id, issued.row.id


def is_live(token_id: int) -> bool:
    db.session.expire_all()
    return db.session.get(OneTimeToken, token_id).used_at is None


@pytest.mark.parametrize(
    ("older_status", "older_finished", "older_claimed", "spent"),
    [
        ("sent", T0 - timedelta(seconds=1), T0 - timedelta(seconds=2), True),  # arrived first
        ("sent", T0 + timedelta(seconds=1), T0 - timedelta(seconds=2), False),  # overlapped
        ("sending", None, T0 - timedelta(seconds=2), False),  # still in flight
        ("sending", None, T0 - timedelta(minutes=10), True),  # in doubt, long ago
        ("pending", None, None, True),  # waiting: it will be dropped as superseded
        ("dead", None, T0 - timedelta(seconds=2), True),
    ],
)
def test_a_hand_over_spends_only_what_arrived_before_it(
    app, client, mailbox, older_status, older_finished, older_claimed, spent
):
    email = unique_email()
    register(client, email)
    settle(client)
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        older_mail, older_token = reset_mail(user, T0 - timedelta(minutes=1))
        newer_mail, newer_token = reset_mail(user, T0 - timedelta(seconds=30))
        db.session.execute(
            update(OutboxMail)
            .where(OutboxMail.id == older_mail)
            .values(status=older_status, finished_at=older_finished, claimed_at=older_claimed)
        )
        db.session.commit()

        # The newer mail, claimed at T0, is handed over a moment later.
        ott.spend_superseded(
            newer_mail,
            T0 + timedelta(seconds=2),
            claimed_at=T0,
            in_flight_since=T0 - timedelta(minutes=5),
        )
        db.session.commit()
        assert is_live(older_token) is not spent
        assert is_live(newer_token)
