"""`flask mail send-pending --loop` (the mail worker) and `flask mail status`.

What send-pending delivers, retries and gives up on is tests/api/test_mail_outbox.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskCliRunner

from idp.clock import utcnow
from idp.extensions import db
from idp.models import OutboxMail
from tests.api.test_mail_outbox import only_row, outbox, smtp_down
from tests.flows import register, settle, unique_email

ROOT = Path(__file__).resolve().parents[2]
FLASK = Path(sys.executable).parent / "flask"


# -- `flask mail send-pending --loop` ----------------------------------------------------------


@pytest.mark.e2e  # a real `flask mail send-pending --loop` process: some seconds to start
def test_the_mail_worker_delivers_what_appears_while_it_runs_and_stops_on_sigterm(
    make_app, base_settings, mailbox
):
    down = smtp_down(make_app, IDP_MAIL_RETRY_DELAY=0)
    left_over, newcomer = unique_email("leftover"), unique_email("newcomer")
    register(down.test_client(), left_over)
    settle(down.test_client())
    assert only_row(down).status == "pending"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_", "FLASK_"))}
    env.update({name: str(value) for name, value in base_settings.items()})
    env["PYTHONUNBUFFERED"] = "1"
    command = [str(FLASK), "--app", "wsgi", "mail", "send-pending", "--loop", "--interval", "0.2"]
    worker = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        mailbox.wait_for(left_over, timeout=20)  # what a crash left behind, on start
        assert register(down.test_client(), newcomer).status_code == 201
        mailbox.wait_for(newcomer, timeout=10)  # what appears while it runs
        settle(down.test_client())
        assert worker.poll() is None  # still running after each pass

        stopped = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=5)
        assert time.monotonic() - stopped < 3  # the pass it was in, then out: no --interval wait
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, stderr
    assert "1 sent" in stdout
    assert len(mailbox.to(left_over)) == len(mailbox.to(newcomer)) == 1
    assert {row.status for row in outbox(down)} == {"sent"}


# -- `flask mail status` ----------------------------------------------------------------------


def mail_status(runner: FlaskCliRunner) -> str:
    result = runner.invoke(args=["mail", "status"])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def add_mail(status: str, age: timedelta, **columns: Any) -> int:
    created = utcnow() - age
    row = OutboxMail(
        message="verify_email",
        recipient=columns.pop("recipient", "ada@example.com"),
        payload=None if status in ("requested", "sent", "dead", "dropped") else b"sealed",
        status=status,
        attempts=columns.pop("attempts", 1),
        next_attempt_at=columns.pop("next_attempt_at", created),
        created_at=created,
        **columns,
    )
    db.session.add(row)
    db.session.flush()
    return row.id


def test_mail_status_counts_each_status_and_shows_what_is_due_in_doubt_and_dead(app, runner):
    assert mail_status(runner).splitlines() == [
        "requested: 0",
        "pending: 0",
        "sending: 0",
        "sent: 0",
        "dead: 0",
        "dropped: 0",
        "due now: 0",
        "in doubt (claimed, never reported back): 0",
    ]

    now = utcnow()
    minute = timedelta(minutes=1)
    with app.app_context():
        add_mail("requested", minute, attempts=0)
        add_mail("pending", 2 * minute)  # due
        add_mail("pending", 90 * minute, next_attempt_at=now + 10 * minute)  # backing off
        add_mail("sending", 3 * minute, claimed_at=now - 30 * minute)  # in doubt
        add_mail("sending", minute, claimed_at=now - timedelta(seconds=5))  # in progress
        add_mail("sent", minute, finished_at=now)
        add_mail("sent", minute, finished_at=now)
        add_mail("dropped", minute, finished_at=now, last_error="no_recipient")
        older = add_mail(
            "dead",
            minute,
            recipient="bo@example.com",
            attempts=8,
            last_error="smtp_451",
            finished_at=now - minute,
        )
        newer = add_mail(
            "dead",
            minute,
            attempts=1,
            last_error="unsealable",
            finished_at=now.replace(microsecond=0),
        )
        db.session.commit()

    lines = mail_status(runner).splitlines()
    assert lines[:8] == [
        "requested: 1",
        "pending: 2",
        "sending: 2",
        "sent: 2",
        "dead: 2",
        "dropped: 1",
        "due now: 2",
        "in doubt (claimed, never reported back): 1",
    ]
    age = int(re.fullmatch(r"oldest unsent: (\d+)s old", lines[8]).group(1))
    assert 90 * 60 <= age < 90 * 60 + 30
    stamp = now.isoformat(timespec="seconds")
    assert lines[9] == (
        f"dead #{newer}  verify_email  ada@example.com  attempts=1  error=unsealable  {stamp}"
    )
    assert lines[10].startswith(
        f"dead #{older}  verify_email  bo@example.com  attempts=8  error=smtp_451  "
    )
    assert len(lines) == 11
