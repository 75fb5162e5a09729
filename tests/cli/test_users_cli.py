"""`flask users list|show|disable|enable|sign-out`: what they do to tokens, sessions, logins."""

from __future__ import annotations

import json
import secrets

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from idp.clock import utcnow
from idp.extensions import db
from idp.models import BrowserSession, User
from tests.flows import (
    API,
    PASSWORD,
    LoggedIn,
    logged_in_user,
    login,
    register,
    register_and_verify,
    unique_email,
    verify_token,
)

INVALID_CREDENTIALS = {
    "success": False,
    "message": "Invalid email or password.",
    "code": "invalid_credentials",
}


def users(runner: FlaskCliRunner, *args: str, exit_code: int = 0) -> str:
    result = runner.invoke(args=["users", *args])
    assert result.exit_code == exit_code, result.output
    return result.output


def refresh(client: FlaskClient, token: str) -> int:
    return client.post(f"{API}/token/refresh/", json={"refresh_token": token}).status_code


def add_browser_session(app: Flask, email: str) -> str:
    """A sign-in on the hosted pages, made straight in the database."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        now = utcnow()
        row = BrowserSession(
            public_id=secrets.token_urlsafe(32),
            cookie_hash=secrets.token_hex(32),
            user_id=user.id,
            auth_time=now,
            last_seen_at=now,
        )
        db.session.add(row)
        db.session.commit()
        return row.public_id


def browser_session(app: Flask, public_id: str) -> BrowserSession:
    with app.app_context():
        row = db.session.scalar(select(BrowserSession).where(BrowserSession.public_id == public_id))
        db.session.expunge(row)
        return row


def user_row(app: Flask, email: str) -> User:
    with app.app_context():
        row = db.session.scalar(select(User).where(User.email == email))
        db.session.expunge(row)
        return row


def audit_events(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def user(client, mailbox) -> LoggedIn:
    return logged_in_user(client, mailbox)


def test_disable_stops_every_token_and_session_and_login_answers_as_a_wrong_password(
    app, runner, client, user, audit_output
):
    browser = add_browser_session(app, user.email)
    assert verify_token(client, user.token).status_code == 200

    output = users(runner, "disable", user.email.upper())  # any spelling of the address

    assert f"user {user.email.upper()} disabled; sessions ended: 2" in output
    assert verify_token(client, user.token).status_code == 401
    assert refresh(client, user.refresh_token) == 401
    assert browser_session(app, browser).ended_reason == "disabled"
    right = login(client, user.email)
    wrong = login(client, user.email, "Wrong-Password-1")
    assert right.status_code == wrong.status_code == 401
    assert right.json == wrong.json == INVALID_CREDENTIALS
    row = user_row(app, user.email)
    assert row.disabled_at is not None and row.is_active is False
    assert row.sessions_valid_after == row.disabled_at
    events = audit_events(audit_output)
    disabled = [e for e in events if e["event"] == "user.disabled"]
    assert disabled == [
        {
            **disabled[0],
            "outcome": "success",
            "actor": "cli",
            "user_id": user.user_id,
            "sessions": 1,
            "browser_sessions": 1,
        }
    ]
    refused = [e for e in events if e["event"] == "login.failure" and e["reason"] == "disabled"]
    assert [e["outcome"] for e in refused] == ["denied"]


def test_disabling_twice_says_so_and_changes_nothing(app, runner, user, audit_output):
    users(runner, "disable", user.email)
    before = user_row(app, user.email)
    output = users(runner, "disable", user.email)
    assert "already disabled; nothing changed" in output
    after = user_row(app, user.email)
    assert (after.disabled_at, after.sessions_valid_after) == (
        before.disabled_at,
        before.sessions_valid_after,
    )
    assert [e["event"] for e in audit_events(audit_output)].count("user.disabled") == 1


def test_enable_lets_the_user_log_in_again_but_the_old_tokens_stay_dead(
    app, runner, client, user, audit_output
):
    users(runner, "disable", user.email)
    output = users(runner, "enable", user.email)
    assert f"user {user.email} enabled" in output

    fresh = login(client, user.email)
    assert fresh.status_code == 200, fresh.json
    assert verify_token(client, fresh.json["data"]["token"]).status_code == 200
    assert verify_token(client, user.token).status_code == 401
    assert refresh(client, user.refresh_token) == 401
    enabled = [e for e in audit_events(audit_output) if e["event"] == "user.enabled"]
    assert [(e["outcome"], e["user_id"]) for e in enabled] == [("success", user.user_id)]
    assert "is not disabled; nothing changed" in users(runner, "enable", user.email)


def test_enabling_an_unverified_account_leaves_it_unverified(app, runner, client):
    email = unique_email()
    assert register(client, email).status_code == 201
    users(runner, "disable", email)
    users(runner, "enable", email)
    assert user_row(app, email).is_active is False
    assert login(client, email).json["code"] == "email_not_verified"


def test_sign_out_ends_every_session_and_token_but_the_user_may_log_in(
    app, runner, client, mailbox, audit_output
):
    user = logged_in_user(client, mailbox)
    second = login(client, user.email).json["data"]
    browser = add_browser_session(app, user.email)

    output = users(runner, "sign-out", user.email)

    assert "sessions ended: 3 (2 refresh, 1 browser)" in output
    for token in (user.token, second["token"]):
        assert verify_token(client, token).status_code == 401
    for token in (user.refresh_token, second["refresh_token"]):
        assert refresh(client, token) == 401
    assert browser_session(app, browser).ended_reason == "admin_sign_out"
    fresh = login(client, user.email)
    assert fresh.status_code == 200
    assert verify_token(client, fresh.json["data"]["token"]).status_code == 200
    signed_out = [e for e in audit_events(audit_output) if e["event"] == "user.signed_out"]
    assert [(e["user_id"], e["sessions"], e["browser_sessions"]) for e in signed_out] == [
        (user.user_id, 2, 1)
    ]
    # Only the session opened since then is left to end.
    again = users(runner, "sign-out", user.email)
    assert "sessions ended: 1 (1 refresh, 0 browser)" in again


@pytest.mark.parametrize("command", ["show", "disable", "enable", "sign-out"])
def test_an_unknown_email_is_an_error_and_changes_nothing(app, runner, user, command):
    result = runner.invoke(args=["users", command, "nobody@example.com"])
    assert result.exit_code == 1
    assert "no user with email nobody@example.com" in result.output
    assert user_row(app, user.email).sessions_valid_after is None


@pytest.mark.parametrize("email", ["evil\x1b[31m@example.com", "nul\x00@example.com", "-x@y.z"])
def test_an_odd_email_argument_is_looked_up_and_echoed_safely(runner, email):
    result = runner.invoke(args=["users", "disable", email])
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\x00" not in result.output
    assert "no user with email" in result.output


def test_list_shows_each_user_oldest_first_with_their_state(app, runner, client, mailbox):
    active, unverified, disabled = unique_email(), unique_email(), unique_email()
    ids = [register_and_verify(client, mailbox, active)]
    ids.append(register(client, unverified).json["data"]["user_id"])
    ids.append(register_and_verify(client, mailbox, disabled))
    users(runner, "disable", disabled)

    lines = users(runner, "list").splitlines()

    expected = [(active, "active"), (unverified, "unverified"), (disabled, "disabled")]
    assert [line.split("  ")[:3] for line in lines] == [
        [email, user_id, state] for (email, state), user_id in zip(expected, ids, strict=True)
    ]
    created = user_row(app, active).created_at.isoformat(timespec="seconds")
    assert lines[0].split("  ")[3] == created


def test_list_escapes_control_characters_in_an_address(app, runner):
    with app.app_context():
        now = utcnow()
        db.session.add(
            User(
                public_id="11111111-1111-1111-1111-111111111111",
                email="evil\n@example.com\x1b[31m\u202e",
                email_canonical="evil-canonical@example.com",
                password_hash="not-a-hash",
                first_name="E",
                last_name="Vil",
                is_active=False,
                created_at=now,
                updated_at=now,
            )
        )
        db.session.commit()
    output = users(runner, "list")
    assert output.count("\n") == 1
    assert "\x1b" not in output and "\u202e" not in output
    assert output.startswith("evil\\n@example.com\\x1b[31m\\u202e  ")


def test_show_prints_the_user_their_last_login_and_live_sessions(app, runner, client, mailbox):
    user = logged_in_user(client, mailbox)
    login(client, user.email)
    add_browser_session(app, user.email)
    row = user_row(app, user.email)

    output = users(runner, "show", user.email)

    assert output.splitlines() == [
        f"email: {user.email}",
        f"sub: {user.user_id}",
        "state: active",
        f"created: {row.created_at.isoformat(timespec='seconds')}",
        f"last login: {row.last_login_at.isoformat(timespec='seconds')}",
        "refresh sessions: 2",
        "browser sessions: 1",
    ]
    users(runner, "sign-out", user.email)
    after = users(runner, "show", user.email)
    assert "refresh sessions: 0" in after and "browser sessions: 0" in after


def test_show_says_never_for_an_account_that_never_logged_in(runner, client):
    email = unique_email()
    register(client, email)
    output = users(runner, "show", email)
    assert "state: unverified" in output and "last login: never" in output


def test_a_disabled_users_correct_password_counts_on_the_login_walls(make_app, mailbox):
    app = make_app(
        IDP_TRUSTED_PROXIES=1,
        IDP_LOGIN_FAILURES_PER_SOURCE="2 per 15 minutes",
        IDP_RATELIMIT_ENABLED=True,
    )
    client, runner = app.test_client(), app.test_cli_runner()
    email = unique_email()
    register_and_verify(client, mailbox, email)
    users(runner, "disable", email)

    def login_from(source: str) -> int:
        body = {"email": email, "password": PASSWORD}
        headers = {"X-Forwarded-For": source}
        return client.post(f"{API}/login/", json=body, headers=headers).status_code

    assert [login_from("203.0.113.7") for _ in range(2)] == [401, 401]
    users(runner, "enable", email)
    assert login_from("203.0.113.7") == 429  # this source used up its failures
    assert login_from("203.0.113.8") == 200
