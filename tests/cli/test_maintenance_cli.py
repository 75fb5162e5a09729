"""`flask maintenance purge`: dead rows go, anything that could still be presented stays."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from flask.testing import FlaskCliRunner
from sqlalchemy import func, select

from idp.clock import utcnow
from idp.extensions import db
from idp.models import (
    OneTimeToken,
    OutboxMail,
    RefreshSession,
    RefreshToken,
    RevokedAccessToken,
    User,
)
from tests.flows import API, API_CLIENT_ID, logged_in_user, verify_token

DAY = timedelta(days=1)
TABLES = {
    "revoked_access_tokens": RevokedAccessToken,
    "one_time_tokens": OneTimeToken,
    "refresh_sessions": RefreshSession,
    "refresh_tokens": RefreshToken,
    "mail_outbox": OutboxMail,
}


def add_mail(status: str, created: datetime, finished: datetime | None = None) -> int:
    row = OutboxMail(
        message="verify_email",
        recipient="ada@example.com",
        payload=None if finished else b"sealed",
        status=status,
        attempts=1,
        next_attempt_at=created,
        created_at=created,
        finished_at=finished,
    )
    db.session.add(row)
    db.session.flush()
    return row.id


def add_user() -> User:
    public_id = str(uuid.uuid4())
    user = User(
        public_id=public_id,
        email=f"{public_id}@example.com",
        email_canonical=f"{public_id}@example.com",
        password_hash="not-a-hash",
        first_name="Ada",
        last_name="Lovelace",
        is_active=True,
    )
    db.session.add(user)
    return user


def add_session(user: User, created: datetime, revoked: datetime | None = None) -> RefreshSession:
    session = RefreshSession(
        public_id=secrets.token_urlsafe(24),
        user=user,
        client_id=API_CLIENT_ID,
        scope="profile email",
        created_at=created,
        revoked_at=revoked,
        revoked_reason="logout" if revoked else None,
    )
    db.session.add(session)
    db.session.flush()
    return session


def add_refresh_token(
    session: RefreshSession, created: datetime, expires: datetime, used: datetime | None = None
) -> str:
    token_hash = secrets.token_hex(32)
    db.session.add(
        RefreshToken(
            session_id=session.id,
            token_hash=token_hash,
            created_at=created,
            expires_at=expires,
            used_at=used,
        )
    )
    return token_hash


def add_one_time_token(user: User, expires: datetime, used: datetime | None = None) -> str:
    token_hash = secrets.token_hex(32)
    db.session.add(
        OneTimeToken(
            user=user,
            purpose="verify_email",
            token_hash=token_hash,
            created_at=expires - 2 * DAY,
            expires_at=expires,
            used_at=used,
        )
    )
    return token_hash


def add_denied(expires: datetime) -> str:
    jti = secrets.token_urlsafe(16)
    db.session.add(RevokedAccessToken(jti=jti, expires_at=expires, revoked_at=expires - DAY))
    return jti


def counts() -> dict[str, int]:
    return {
        name: db.session.scalar(select(func.count()).select_from(model))
        for name, model in TABLES.items()
    }


def purge(runner: FlaskCliRunner, *args: str) -> str:
    result = runner.invoke(args=["maintenance", "purge", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_purge_deletes_dead_rows_in_batches_and_keeps_live_ones(app, runner):
    now = utcnow()
    with app.app_context():
        user = add_user()
        kept_denied = [add_denied(now + DAY), add_denied(now - timedelta(minutes=1))]
        add_denied(now - timedelta(hours=1))

        kept_one_time = [
            add_one_time_token(user, now + DAY),  # outstanding
            add_one_time_token(user, now - DAY),  # expired within the retention
            add_one_time_token(user, now + DAY, used=now - DAY),  # used within the retention
        ]
        add_one_time_token(user, now - 8 * DAY)  # expired long ago
        add_one_time_token(user, now - 6 * DAY, used=now - 8 * DAY)  # used long ago

        live = add_session(user, now - 30 * DAY)
        add_refresh_token(live, now - 30 * DAY, now - 16 * DAY, used=now - 16 * DAY)
        kept_tokens = [
            # Spent, expired only lately: the reuse-detection record stays for the retention.
            add_refresh_token(live, now - 16 * DAY, now - 2 * DAY, used=now - 2 * DAY),
            # Spent and not yet expired: a replay must still be recognised as reuse.
            add_refresh_token(live, now - 2 * DAY, now + 12 * DAY, used=now - DAY),
            add_refresh_token(live, now - DAY, now + 13 * DAY),
        ]
        dead = add_session(user, now - 40 * DAY)
        add_refresh_token(dead, now - 40 * DAY, now - 26 * DAY, used=now - 30 * DAY)
        add_refresh_token(dead, now - 30 * DAY, now - 16 * DAY)
        revoked_long_ago = add_session(user, now - 11 * DAY, revoked=now - 10 * DAY)
        add_refresh_token(revoked_long_ago, now - 11 * DAY, now + 3 * DAY)
        revoked_lately = add_session(user, now - 2 * DAY, revoked=now - DAY)
        kept_tokens.append(add_refresh_token(revoked_lately, now - 2 * DAY, now + 12 * DAY))
        kept_sessions = {live.id, revoked_lately.id}
        kept_mails = {
            add_mail("pending", now - 9 * DAY),  # owed, however old: never purged
            add_mail("sending", now - 9 * DAY),  # in doubt: left for an admin to see
            add_mail("sent", now - 2 * DAY, finished=now - DAY),  # within the retention
        }
        add_mail("sent", now - 9 * DAY, finished=now - 9 * DAY)
        add_mail("dead", now - 9 * DAY, finished=now - 8 * DAY)
        add_mail("dropped", now - 9 * DAY, finished=now - 8 * DAY)
        user_id = user.id
        db.session.commit()
        before = counts()

    output = purge(runner, "--retention-days", "7", "--batch-size", "2")

    assert output.splitlines() == [
        "revoked_access_tokens: 1 deleted",
        "one_time_tokens: 2 deleted",
        "refresh_tokens: 4 deleted",
        "refresh_sessions: 2 deleted",
        "mail_outbox: 3 deleted",
    ]
    with app.app_context():
        after = counts()
        assert after == {
            "revoked_access_tokens": before["revoked_access_tokens"] - 1,
            "one_time_tokens": before["one_time_tokens"] - 2,
            "refresh_sessions": before["refresh_sessions"] - 2,
            "refresh_tokens": before["refresh_tokens"] - 4,
            "mail_outbox": before["mail_outbox"] - 3,
        }
        assert set(db.session.scalars(select(OutboxMail.id))) == kept_mails
        assert set(db.session.scalars(select(RevokedAccessToken.jti))) == set(kept_denied)
        assert set(db.session.scalars(select(OneTimeToken.token_hash))) == set(kept_one_time)
        assert set(db.session.scalars(select(RefreshToken.token_hash))) == set(kept_tokens)
        assert set(db.session.scalars(select(RefreshSession.id))) == kept_sessions
        assert db.session.get(User, user_id) is not None

    # Idempotent: a second run finds nothing more.
    assert purge(runner, "--retention-days", "7").splitlines() == [
        "revoked_access_tokens: 0 deleted",
        "one_time_tokens: 0 deleted",
        "refresh_tokens: 0 deleted",
        "refresh_sessions: 0 deleted",
        "mail_outbox: 0 deleted",
    ]


def test_a_session_stays_while_an_access_token_minted_in_it_may_be_live(app, runner):
    """A short refresh TTL can expire before the access token minted with it: its sid stays."""
    now = utcnow()
    with app.app_context():
        user = add_user()
        recent = add_session(user, now - timedelta(minutes=10))
        kept = add_refresh_token(recent, recent.created_at, now - timedelta(minutes=5))
        old = add_session(user, now - timedelta(hours=3))
        add_refresh_token(old, old.created_at, now - timedelta(hours=2, minutes=55))
        recent_id = recent.id
        db.session.commit()

    output = purge(runner, "--retention-days", "0")

    assert "refresh_tokens: 1 deleted" in output
    assert "refresh_sessions: 1 deleted" in output
    with app.app_context():
        assert list(db.session.scalars(select(RefreshToken.token_hash))) == [kept]
        assert list(db.session.scalars(select(RefreshSession.id))) == [recent_id]


def test_reuse_detection_and_the_denylist_survive_a_purge(client, runner, mailbox):
    user = logged_in_user(client, mailbox)
    rotated = client.post(f"{API}/token/refresh/", json={"refresh_token": user.refresh_token})
    assert rotated.status_code == 200
    new_pair = rotated.json["data"]
    other = logged_in_user(client, mailbox)
    logged_out = client.post(f"{API}/logout/", headers=other.auth)
    assert logged_out.status_code == 200

    purge(runner, "--retention-days", "0")

    # The spent token is still known: presenting it again is reuse and ends the session.
    replay = client.post(f"{API}/token/refresh/", json={"refresh_token": user.refresh_token})
    assert replay.status_code == 401
    assert verify_token(client, new_pair["token"]).status_code == 401
    follow_up = client.post(
        f"{API}/token/refresh/", json={"refresh_token": new_pair["refresh_token"]}
    )
    assert follow_up.status_code == 401
    # The logged-out access token is still denylisted until it expires.
    assert verify_token(client, other.token).status_code == 401


def test_purge_refuses_nonsense_options(runner):
    for args in (["--retention-days", "-1"], ["--batch-size", "0"]):
        result = runner.invoke(args=["maintenance", "purge", *args])
        assert result.exit_code != 0
