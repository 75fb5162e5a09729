"""idp.audit: the line format, the refusal of secret-bearing fields, and who an event names."""

from __future__ import annotations

import io
import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from idp import audit

REQUIRED = ["ts", "event", "outcome", "actor", "request_id", "client_address", "user_id"]


def events(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_an_event_is_one_json_object_on_one_line_with_the_required_keys(app, audit_output):
    environ = {"REMOTE_ADDR": "203.0.113.9"}
    with app.test_request_context("/api/v1/auth/login/", environ_base=environ):
        app.preprocess_request()  # assigns the request id
        audit.record(
            "mail.dead", "failure", user_id="u-1", reason="bad\nline", message="verify_email"
        )

    text = audit_output.getvalue()
    assert text.count("\n") == 1  # a newline in a value is escaped, not a second record
    (event,) = events(audit_output)
    assert list(event)[: len(REQUIRED)] == REQUIRED
    assert event["event"] == "mail.dead" and event["outcome"] == "failure"
    assert event["actor"] == "http"
    assert len(event["request_id"]) == 16
    assert event["client_address"] == "203.0.113.9"
    assert event["user_id"] == "u-1"
    assert event["reason"] == "bad\nline" and event["message"] == "verify_email"
    assert event["ts"].endswith("Z")
    moment = datetime.fromisoformat(event["ts"])
    assert moment.tzinfo is not None and moment.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 60


def test_the_record_carries_the_event_for_programs_too(app, caplog):
    with app.app_context():
        audit.record("key.retired", "success", kid="abc")
    (record,) = [r for r in caplog.records if r.name == "idp.audit"]
    assert record.audit["event"] == "key.retired" and record.audit["kid"] == "abc"
    assert json.loads(record.getMessage()) == record.audit
    assert record.levelno == logging.INFO


def test_failures_and_denials_are_warnings(app, caplog):
    with app.app_context():
        audit.record("session.reuse_detected", "denied", user_id="u")
        audit.record("login.failure", "failure", reason="bad_password")
    assert [r.levelno for r in caplog.records if r.name == "idp.audit"] == [logging.WARNING] * 2


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "new_password",
        "token",
        "refresh_token",
        "access_token",
        "raw_token",
        "client_secret",
        "secret",
        "link",
        "reset_link",
        "url",
        "api_key",
        "Authorization",
        "cookie",
        "credentials",
    ],
)
def test_a_field_that_could_hold_a_secret_is_refused(app, audit_output, name):
    with app.app_context(), pytest.raises(ValueError, match="could hold a secret"):
        audit.record("login.failure", "failure", **{name: "s3cret-value"})
    assert audit_output.getvalue() == ""


@pytest.mark.parametrize("name", ["ts", "actor", "request_id", "client_address", "email_hash"])
def test_the_fixed_keys_cannot_be_overridden(app, name):
    # (event, outcome and user_id are parameters: Python itself refuses a second value.)
    with app.app_context(), pytest.raises(ValueError, match="reserved"):
        audit.record("login.failure", "failure", **{name: "forged"})


@pytest.mark.parametrize("value", [{"sub": "x"}, ["a"], object(), b"bytes"])
def test_only_plain_values_are_logged(app, value):
    # A dict of claims or a request form could carry anything.
    with app.app_context(), pytest.raises(TypeError, match="plain value"):
        audit.record("login.failure", "failure", detail=value)


def test_unknown_events_and_outcomes_are_refused(app):
    with app.app_context():
        with pytest.raises(ValueError, match="unknown audit event"):
            audit.record("login.maybe", "success")
        with pytest.raises(ValueError, match="has no outcome"):
            audit.record("login.success", "ok")
        with pytest.raises(ValueError, match="has no outcome"):
            audit.record("login.success", "denied")  # a real outcome, not this event's


def test_only_the_fields_and_reasons_the_catalogue_lists_are_written(app, audit_output):
    with app.app_context():
        with pytest.raises(ValueError, match="has no field 'jti'"):
            audit.record("login.failure", "failure", reason="bad_password", jti="x")
        with pytest.raises(ValueError, match="has no reason 'typo'"):
            audit.record("login.failure", "failure", reason="typo")
        with pytest.raises(ValueError, match="has no field 'reason'"):
            audit.record("user.verify_email", "success", reason="anything")
        audit.record("mail.dead", "failure", reason="smtp_550", mail_id=1, message="m")
    assert [e["reason"] for e in events(audit_output)] == ["smtp_550"]


def test_the_readme_table_is_the_catalogue():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert audit.catalogue_table() in readme


def test_an_email_is_logged_only_as_a_keyed_digest(make_app, audit_output):
    app = make_app()
    with app.app_context():
        audit.record("login.failure", "failure", reason="unknown_account", email="Ada@Example.com")
        audit.record("login.failure", "failure", reason="unknown_account", email="ada@example.com")
        audit.record("login.failure", "failure", reason="unknown_account", email="bob@example.com")
    other = make_app(IDP_SECRET_KEY="another-secret-key-for-another-deployment")
    with other.app_context():
        audit.record("login.failure", "failure", reason="unknown_account", email="ada@example.com")

    first, same, different, elsewhere = (e["email_hash"] for e in events(audit_output))
    assert (
        "ada@" not in audit_output.getvalue().lower() and "example" not in audit_output.getvalue()
    )
    assert len(first) == 16
    assert first == same  # every spelling of one address correlates
    assert first != different
    assert first != elsewhere  # keyed: not a digest anyone can recompute from an address list


def test_cli_events_name_the_cli_and_no_request(make_app, tmp_path, caplog):
    app = make_app(IDP_KEYS_DIR=str(tmp_path))
    runner = app.test_cli_runner()

    rotated = runner.invoke(args=["keys", "rotate", "--staged"])
    assert rotated.exit_code == 0, rotated.output
    kid = rotated.stdout.strip()
    assert runner.invoke(args=["keys", "activate", kid]).exit_code == 0
    created = runner.invoke(args=["clients", "create", "svc", "--scope", "read"])
    assert created.exit_code == 0, created.output
    client_id = created.stdout.split()[1]
    assert runner.invoke(args=["clients", "delete", client_id]).exit_code == 0

    recorded = [r.audit for r in caplog.records if r.name == "idp.audit"]
    assert [(e["event"], e.get("kid"), e.get("client_id")) for e in recorded] == [
        ("key.rotated", kid, None),
        ("key.activated", kid, None),
        ("client.created", None, client_id),
        ("client.deleted", None, client_id),
    ]
    assert recorded[0]["staged"] is True
    for event in recorded:
        assert event["actor"] == "cli"
        assert event["request_id"] is None and event["client_address"] is None
        assert event["user_id"] is None
    secret = created.stdout.split("client_secret:")[1].split()[0]
    assert secret not in caplog.text


def test_work_done_after_a_request_keeps_its_origin(app, audit_output):
    with app.test_request_context(environ_base={"REMOTE_ADDR": "198.51.100.4"}):
        app.preprocess_request()
        origin = audit.origin()

    def job() -> None:
        with app.app_context(), audit.on_behalf_of(origin):
            audit.record("password_reset.requested", "success", user_id="u-2")
        with app.app_context():
            audit.record("password_reset.requested", "success", user_id="u-3")

    worker = threading.Thread(target=job)
    worker.start()
    worker.join()

    carried, bare = events(audit_output)
    assert carried["actor"] == "http" and carried["client_address"] == "198.51.100.4"
    assert carried["request_id"] is not None
    assert carried["request_id"] == origin["request_id"]
    assert bare["actor"] == "cli" and bare["request_id"] is None


def test_init_app_leaves_a_host_logging_setup_alone(app, monkeypatch):
    monkeypatch.setattr(audit.logger, "handlers", [])
    assert logging.getLogger().handlers  # pytest's own
    audit.init_app(app)
    assert audit.logger.handlers == []
    assert audit.logger.propagate is True


def test_libraries_that_log_tokens_at_debug_are_held_at_info(app):
    # Authlib logs "Issue token {'access_token': ...}" at DEBUG; turning the root logger
    # up must not turn that on.
    assert logging.getLogger("authlib").level == logging.INFO
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.DEBUG)
    try:
        grant_log = logging.getLogger("authlib.oauth2.rfc6749.grants.client_credentials")
        assert not grant_log.isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(previous)
