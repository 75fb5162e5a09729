"""The audit log through a whole user and client journey: every event, and never a secret.

Everything logged at DEBUG by every logger is collected (formatted text, the records' raw
arguments and extras, and the audit handler's JSON lines) and searched for each password, token,
one-time token, mail link and client secret the journey used.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections import Counter
from typing import Any

import pytest

from tests.flows import API, API_CLIENT_ID, PASSWORD, login, register, settle, unique_email

NEW_PASSWORD = "Fresh-Meadow-42"
WRONG_PASSWORD = "Wrong-Horse-8"
LINK = re.compile(r"http://frontend\.test/[\w/-]+\?token=[\w-]+")
REQUEST_ID = re.compile(r"^[0-9a-f]{16}$")
TEST_CLIENT_ADDRESS = "127.0.0.1"  # werkzeug's test client


def everything_logged(caplog: pytest.LogCaptureFixture, audit_output: io.StringIO) -> str:
    parts = [caplog.text, audit_output.getvalue()]
    # The raw record too: arguments and extras that a formatter might not print.
    parts.extend(repr(vars(record)) for record in caplog.records)
    return "\n".join(parts)


def mail_link(mail: Any) -> str:
    match = LINK.search(mail.text)
    assert match, mail.text
    return match.group(0)


def test_a_full_journey_logs_every_event_and_no_secret(
    make_app, mailbox, caplog, audit_output, tmp_path
):
    app = make_app(IDP_LOG_LEVEL="DEBUG")
    client = app.test_client()
    # The test's own SMTP server (aiosmtpd) prints each message it receives at DEBUG: it plays
    # the user's mailbox, and the mails are meant to hold the links.
    caplog.set_level(logging.INFO, logger="mail.log")
    # Then the root and the capture handler (last: set_level also sets the handler's level):
    # every library that does not pin a level of its own logs at DEBUG.
    caplog.set_level(logging.DEBUG)
    email = unique_email("audited")
    secrets: list[str] = [PASSWORD, NEW_PASSWORD, WRONG_PASSWORD]
    request_ids: dict[str, str] = {}

    def remember(name: str, response: Any, status: int) -> Any:
        assert response.status_code == status, response.get_data(as_text=True)
        request_ids[name] = response.headers["X-Request-ID"]
        return response

    # Register, then verify with the mailed link.
    registered = remember("register", register(client, email), 201)
    user_id = registered.json["data"]["user_id"]
    verify_mail = mailbox.wait_for(email)[-1]
    secrets += [verify_mail.token, mail_link(verify_mail)]
    body = {"token": verify_mail.token}
    remember("verify", client.post(f"{API}/verify-email/", json=body), 200)

    # A wrong password, an unknown account, then a login.
    remember("bad_password", login(client, email, WRONG_PASSWORD), 401)
    remember("unknown_account", login(client, unique_email("nobody"), PASSWORD), 401)
    first = remember("login", login(client, email), 200).json["data"]

    # Refresh, then replay the spent refresh token: the session is revoked.
    refresh = f"{API}/token/refresh/"
    body = {"refresh_token": first["refresh_token"]}
    second = remember("refresh", client.post(refresh, json=body), 200).json["data"]
    remember("reuse", client.post(refresh, json=body), 401)

    # A new session, ended by logout.
    third = remember("login_again", login(client, email), 200).json["data"]
    headers = {"Authorization": f"Bearer {third['token']}"}
    body = {"refresh_token": third["refresh_token"]}
    remember("logout", client.post(f"{API}/logout/", json=body, headers=headers), 200)

    # Password reset by mail, then a login with the new password.
    body = {"email": email}
    remember("reset", client.post(f"{API}/password-reset/", json=body), 200)
    reset_mail = mailbox.wait_for(email, count=2)[-1]
    secrets += [reset_mail.token, mail_link(reset_mail)]
    body = {"token": reset_mail.token, "new_password": NEW_PASSWORD}
    remember("confirm", client.post(f"{API}/password-reset-confirm/", json=body), 200)
    fourth = remember("login_new", login(client, email, NEW_PASSWORD), 200).json["data"]

    # The public API client revokes its refresh token (RFC 7009).
    form = {"token": fourth["refresh_token"], "client_id": API_CLIENT_ID}
    remember("revoke_refresh", client.post("/oauth/revoke", data=form), 200)

    # An admin registers a client; it fails once, gets a token, and revokes it.
    created = app.test_cli_runner().invoke(args=["clients", "create", "svc", "--scope", "read"])
    assert created.exit_code == 0, created.output
    client_id = re.search(r"^client_id: (\S+)$", created.output, re.M).group(1)
    client_secret = re.search(r"^client_secret: (\S+)$", created.output, re.M).group(1)
    secrets.append(client_secret)
    grant = {"grant_type": "client_credentials"}
    wrong = (client_id, "not-the-secret")
    remember("client_auth_failure", client.post("/oauth/token", data=grant, auth=wrong), 401)
    auth = (client_id, client_secret)
    issued = remember("token", client.post("/oauth/token", data=grant, auth=auth), 200).json
    form = {"token": issued["access_token"]}
    remember("revoke_access", client.post("/oauth/revoke", data=form, auth=auth), 200)

    settle(client)
    for pair in (first, second, third, fourth):
        secrets += [pair["token"], pair["refresh_token"]]
    secrets.append(issued["access_token"])
    # A log line that cut a JWT short would still show its signature, or its start.
    for jwt in (first["token"], issued["access_token"]):
        secrets += [jwt.rsplit(".", 1)[1], jwt[:60]]

    logged = everything_logged(caplog, audit_output)
    assert len(caplog.records) > 20  # the capture worked at all
    leaked = [secret for secret in secrets if secret in logged]
    assert leaked == []

    lines = audit_output.getvalue().splitlines()
    events = [json.loads(line) for line in lines]
    assert all(line.startswith("{") and line.endswith("}") for line in lines)
    found = Counter((e["event"], e["outcome"], e.get("reason"), e.get("kind")) for e in events)
    assert found == Counter(
        {
            ("user.register", "success", None, None): 1,
            ("user.verify_email", "success", None, None): 1,
            ("login.failure", "failure", "bad_password", None): 1,
            ("login.failure", "failure", "unknown_account", None): 1,
            ("login.success", "success", None, None): 3,
            ("session.refresh", "success", None, None): 1,
            ("session.reuse_detected", "denied", None, None): 1,
            ("session.logout", "success", None, None): 1,
            ("password_reset.requested", "success", None, None): 1,
            ("password_reset.confirmed", "success", None, None): 1,
            ("token.revoked", "success", None, "refresh"): 1,
            ("client.created", "success", None, None): 1,
            ("client.auth_failure", "failure", "bad_secret", None): 1,
            ("token.issued", "success", None, None): 1,
            ("token.revoked", "success", None, "access"): 1,
        }
    )

    def only(event: str, **match: Any) -> dict[str, Any]:
        (chosen,) = [e for e in events if e["event"] == event and match.items() <= e.items()]
        return chosen

    # Each HTTP event names the request (the X-Request-ID its answer carried) and the address;
    # the reset request's event is written by a background job and still names its request.
    by_request = {
        "register": only("user.register"),
        "verify": only("user.verify_email"),
        "bad_password": only("login.failure", reason="bad_password"),
        "unknown_account": only("login.failure", reason="unknown_account"),
        "refresh": only("session.refresh"),
        "reuse": only("session.reuse_detected"),
        "logout": only("session.logout"),
        "reset": only("password_reset.requested"),
        "confirm": only("password_reset.confirmed"),
        "revoke_refresh": only("token.revoked", kind="refresh"),
        "client_auth_failure": only("client.auth_failure"),
        "token": only("token.issued"),
        "revoke_access": only("token.revoked", kind="access"),
    }
    logins = [e for e in events if e["event"] == "login.success"]
    by_request.update(zip(["login", "login_again", "login_new"], logins, strict=True))
    for name, event in by_request.items():
        assert event["request_id"] == request_ids[name], name
        assert REQUEST_ID.match(event["request_id"]), name
        assert event["client_address"] == TEST_CLIENT_ADDRESS, name
        assert event["actor"] == "http", name
    user_events = set(by_request) - {"unknown_account", "client_auth_failure", "token"}
    user_events -= {"revoke_access"}
    for name in user_events:
        assert by_request[name]["user_id"] == user_id, name
    for name in ("unknown_account", "client_auth_failure", "token", "revoke_access"):
        assert by_request[name]["user_id"] is None, name

    # Failed logins correlate by a keyed digest of the address, never the address itself.
    assert by_request["bad_password"]["email_hash"] != by_request["unknown_account"]["email_hash"]
    assert re.fullmatch(r"[0-9a-f]{16}", by_request["bad_password"]["email_hash"])
    assert email not in audit_output.getvalue()
    # Sessions and clients are named, so one can follow a session from login to its end.
    assert by_request["refresh"]["session_id"] == by_request["login"]["session_id"]
    assert by_request["reuse"]["session_id"] == by_request["login"]["session_id"]
    assert by_request["logout"]["session_id"] == by_request["login_again"]["session_id"]
    assert by_request["revoke_refresh"]["session_id"] == by_request["login_new"]["session_id"]
    assert by_request["token"]["client_id"] == client_id
    assert by_request["revoke_access"]["jti"] == by_request["token"]["jti"]

    admin = only("client.created")
    assert admin["client_id"] == client_id
    assert admin["actor"] == "cli"
    assert admin["request_id"] is None and admin["client_address"] is None


def test_the_development_mail_backend_logs_live_links_by_design(make_app, caplog, audit_output):
    """Why the journey above uses SMTP: without IDP_MAIL_SERVER, mails (links) go to the log.

    That is the documented development behaviour (README "Configuration"); the audit lines stay
    clean even then.
    """
    app = make_app(IDP_MAIL_SERVER=None)
    client = app.test_client()
    caplog.set_level(logging.INFO)
    email = unique_email("console")

    assert register(client, email).status_code == 201
    settle(client)

    console = [r.getMessage() for r in caplog.records if r.name == "idp.mail.console"]
    assert len(console) == 1
    match = LINK.search(console[0])
    assert match and "/verify-email?token=" in match.group(0)
    token = match.group(0).rsplit("=", 1)[1]
    assert token not in audit_output.getvalue()
    assert json.loads(audit_output.getvalue())["event"] == "user.register"


def test_limits_are_audited_as_denials(make_app, audit_output):
    app = make_app(
        IDP_RATELIMIT_ENABLED=True,
        IDP_RATELIMIT_AUTH="3 per minute",
        IDP_LOGIN_FAILURES_PER_SOURCE="2 per minute",
    )
    client = app.test_client()
    email = unique_email("limited")
    answers = [login(client, email, WRONG_PASSWORD) for _ in range(4)]
    assert [a.status_code for a in answers] == [401, 401, 429, 429]

    events = [json.loads(line) for line in audit_output.getvalue().splitlines()]
    assert [(e["event"], e["outcome"], e.get("reason")) for e in events] == [
        ("login.failure", "failure", "unknown_account"),
        ("login.failure", "failure", "unknown_account"),
        ("login.failure", "denied", "throttled"),  # the per-account-and-source limit
        ("rate_limit.exceeded", "denied", None),  # the per-address route limit
    ]
    assert len({e["email_hash"] for e in events[:3]}) == 1
    limited = events[3]
    assert limited["endpoint"] == "api.login" and limited["limit"]
    assert limited["request_id"] == answers[3].headers["X-Request-ID"]
    assert limited["client_address"] == TEST_CLIENT_ADDRESS
    assert WRONG_PASSWORD not in audit_output.getvalue()


def test_refusals_are_audited_with_their_reasons(make_app, mailbox, audit_output):
    client = make_app(IDP_REFRESH_REUSE_GRACE=30).test_client()
    email = unique_email("refused")
    assert register(client, email).status_code == 201
    assert register(client, email).status_code == 409
    assert login(client, email).status_code == 403  # not verified yet
    assert login(client, email, "A" * 200).status_code == 401
    token = mailbox.wait_for(email)[-1].token
    assert client.post(f"{API}/verify-email/", json={"token": token}).status_code == 200
    session = login(client, email).json["data"]
    refresh = f"{API}/token/refresh/"
    spent = {"refresh_token": session["refresh_token"]}
    assert client.post(refresh, json=spent).status_code == 200
    assert client.post(refresh, json=spent).status_code == 200  # within the grace period
    assert client.post(refresh, json={"refresh_token": "A" * 43}).status_code == 401
    headers = {"Authorization": f"Bearer {session['token']}"}
    body = {"token": "not-the-header-token"}
    assert client.post(f"{API}/logout/", json=body, headers=headers).status_code == 400
    assert client.post(f"{API}/logout/", headers=headers).status_code == 200
    assert client.post(refresh, json=spent).status_code == 401  # its session has ended
    settle(client)

    events = [json.loads(line) for line in audit_output.getvalue().splitlines()]
    summary = [(e["event"], e["outcome"], e.get("reason")) for e in events]
    assert summary == [
        ("user.register", "success", None),
        ("user.register", "failure", "email_exists"),
        ("login.failure", "denied", "unverified"),
        ("login.failure", "failure", "password_too_long"),
        ("user.verify_email", "success", None),
        ("login.success", "success", None),
        ("session.refresh", "success", None),
        ("session.refresh", "success", None),
        ("session.refresh", "failure", "unknown_token"),
        ("session.logout", "failure", "token_mismatch"),
        ("session.logout", "success", None),
        ("session.refresh", "failure", "session_revoked"),
    ]
    assert [e.get("grace") for e in events if e["event"] == "session.refresh"][:2] == [None, True]
    assert events[1]["user_id"] is None and events[1]["email_hash"] == events[2]["email_hash"]
    # Before any look-up (an over-long password) or for an unknown token there is no user.
    anonymous = {"password_too_long", "unknown_token"}
    named = {e["user_id"] for e in events[2:] if e.get("reason") not in anonymous}
    assert named == {events[0]["user_id"]}
