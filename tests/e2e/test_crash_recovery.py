"""End to end: processes killed with SIGKILL mid-request, and what the database says afterwards.

Each test runs gunicorn (2 sync workers) with a slow-ish Argon2, so that a registration lasts
long enough (~80 ms) for a kill to land inside one, and fires a burst of registrations, logouts
and password resets from more client threads than there are workers:

* one worker is killed (the one that has just answered, so it has work in hand): gunicorn
  replaces it, and only the request that worker held may be lost; queued ones go to the other;
* the whole server (master and workers: its process group) is killed, then started again on the
  same port, database and keys folder, and `flask mail send-pending` delivers what it left behind.

Whatever moment the kill hits, every answer a client got is true in the database, and nothing is
half-written: an account always has its verification token and its mail, a mail its account, a
reset mail its token, and a logout is all (token denylisted and session revoked) or nothing.
Mail is delivered at most once: a row the crash left `sending` is in doubt, reported by
`mail status` and never sent again.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from sqlalchemy import create_engine, delete, select, update

from idp.clock import utcnow
from idp.extensions import db
from idp.models import OneTimeToken, OutboxMail, RefreshSession, RevokedAccessToken, User
from idp.models.outbox import DROPPED, PENDING, REQUESTED, SENDING, SENT
from idp.services.accounts import canonical_email
from idp.services.mail import PASSWORD_RESET_MAIL, VERIFY_EMAIL_MAIL
from idp.services.one_time_tokens import PASSWORD_RESET, VERIFY_EMAIL
from idp.services.outbox import IN_DOUBT_AFTER
from tests.e2e.api import Api, status_is, unique_email
from tests.e2e.conftest import (
    FRONTEND_URL,
    REQUEST_TIMEOUT,
    Gunicorn,
    flask_cli,
    server_env,
)
from tests.support import Mailbox, ReceivedMail, RefusingMailbox, SMTPServer, free_port

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "Battery-Staple-42"
# About 80 ms a hash on a 2-core machine: long enough for a kill to land inside a registration.
SLOW_ARGON2 = {
    "IDP_ARGON2_TIME_COST": "2",
    "IDP_ARGON2_MEMORY_COST": "19456",
    "IDP_ARGON2_PARALLELISM": "1",
}
# More clients than workers, so that while a worker dies some requests wait in the backlog.
CLIENTS = 6
REGISTRATIONS = 24
LOGOUTS = 8
RESETS = 8
# Seconds the SMTP server sits on each message before its 250, in the server-crash burst.
SMTP_DELAY_DURING_BURST = 0.5
# The kill comes once this many requests of the burst have been answered.
KILL_AFTER = 12
# What a request of each kind answers when it is served.
SUCCESS = {"register": 201, "logout": 200, "reset": 200}
WORKER_READY_TIMEOUT = 20.0
SEND_PENDING = ("mail", "send-pending", "--limit", "1000")
_probes = itertools.count()


# -- a burst of requests, some of which a kill cuts --------------------------------------------


@dataclass
class Outcome:
    kind: str  # register | logout | reset
    key: Any  # the address (register, reset) or the session (logout)
    probe: str  # the tag of the request in the access log
    status: int | None = None
    # "cut": the connection died under the request (accepted, or waiting in the backlog of a
    # server that died); "refused": nothing listened any more; "timeout": the server hung.
    failure: str | None = None


def _failure(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timeout"
    if "Connection refused" in str(exc):
        return "refused"
    return "cut"


def attempt(kind: str, key: Any, send: Callable[[dict[str, str]], Any]) -> Outcome:
    probe = f"{kind}{next(_probes)}"
    try:
        response = send({"probe": probe})
    except requests.RequestException as exc:
        return Outcome(kind, key, probe, failure=_failure(exc))
    return Outcome(kind, key, probe, status=response.status_code)


def mixed_calls(
    api: Api, new_addresses: list[str], sessions: list[dict[str, Any]], reset_addresses: list[str]
) -> list[Callable[[], Outcome]]:
    """Registrations with the logouts and resets spread evenly among them."""
    groups: list[list[Callable[[], Outcome]]] = [
        [
            lambda a=a: attempt("register", a, lambda p, a=a: api.register(a, params=p))
            for a in new_addresses
        ],
        [
            lambda s=s: attempt("logout", s, lambda p, s=s: api.logout(s, params=p))
            for s in sessions
        ],
        [
            lambda a=a: attempt("reset", a, lambda p, a=a: api.reset(a, params=p))
            for a in reset_addresses
        ],
    ]
    placed = [
        ((index + 0.5) / len(group), number, call)
        for number, group in enumerate(groups)
        for index, call in enumerate(group)
    ]
    return [call for _, _, call in sorted(placed, key=lambda p: (p[0], p[1]))]


class Burst:
    """Run calls from CLIENTS threads; the test thread waits for answers to time its kill."""

    def __init__(self, calls: list[Callable[[], Outcome]]) -> None:
        self._calls = calls
        self._finished: list[Outcome] = []
        self._changed = threading.Condition()
        self._pool = ThreadPoolExecutor(CLIENTS, thread_name_prefix="burst")
        self._futures: list[Any] = []

    def _run(self, call: Callable[[], Outcome]) -> Outcome:
        outcome = call()
        with self._changed:
            self._finished.append(outcome)
            self._changed.notify_all()
        return outcome

    def __enter__(self) -> Burst:
        self._futures = [self._pool.submit(self._run, call) for call in self._calls]
        return self

    def __exit__(self, *_exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def answered(self, count: int, timeout: float = 30.0) -> Outcome:
        """Wait until `count` requests have been answered; return the latest answered one."""
        with self._changed:
            assert self._changed.wait_for(
                lambda: sum(o.status is not None for o in self._finished) >= count, timeout
            ), f"fewer than {count} answers within {timeout}s"
            return [o for o in self._finished if o.status is not None][-1]

    def results(self) -> list[Outcome]:
        return [future.result(timeout=60) for future in self._futures]


# -- processes -----------------------------------------------------------------------------


def _state_and_parent(pid: str) -> tuple[str, int] | None:
    """A process's state letter and parent pid, or None once it is gone (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name, in parentheses, may hold spaces: the fields that follow it are safe.
    state, parent = stat.rsplit(")", 1)[1].split()[:2]
    return state, int(parent)


def live_workers(server: Gunicorn) -> set[str]:
    """Workers of the running master that are alive now (a killed one is gone or a zombie)."""
    assert server.process is not None
    alive = set()
    for pid in server.worker_pids():
        found = _state_and_parent(pid)
        if found is not None and found[0] != "Z" and found[1] == server.process.pid:
            alive.add(pid)
    return alive


def kill_worker(server: Gunicorn, preferred: str) -> str:
    """SIGKILL a worker (`preferred` if it is alive, another one if not); return its pid."""
    alive = live_workers(server)
    assert alive, "no live worker to kill"
    pid = preferred if preferred in alive else sorted(alive)[0]
    os.kill(int(pid), signal.SIGKILL)
    return pid


def crash(server: Gunicorn) -> None:
    """SIGKILL master and workers at once (the process group), as a power cut would."""
    process = server.process
    assert process is not None
    workers = live_workers(server)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    server.process = None
    deadline = time.monotonic() + 10
    # Orphaned workers die on their own schedule: wait until none holds the port any more.
    while any((_state_and_parent(pid) or ("Z", 0))[0] != "Z" for pid in workers):
        assert time.monotonic() < deadline, "workers outlived SIGKILL"
        time.sleep(0.02)


def wait_until_every_worker_serves(server: Gunicorn) -> None:
    """Until a replacement for each killed worker has loaded the app, and every worker answers."""
    deadline = time.monotonic() + WORKER_READY_TIMEOUT
    while True:
        alive = live_workers(server)
        if len(alive) == server.workers and alive <= server.ready_pids():
            break
        assert time.monotonic() < deadline, f"workers {alive - server.ready_pids()} never got ready"
        time.sleep(0.05)
    url = f"{server.url}/.well-known/openid-configuration"
    server.on_every_worker(
        lambda p: requests.get(url, params=p, timeout=REQUEST_TIMEOUT), status_is(200)
    )


def mail_status(env: dict[str, str]) -> dict[str, int]:
    """`flask mail status` as numbers: one per status, `due now` and `in doubt`."""
    output = flask_cli(env, "mail", "status")
    counts = dict(re.findall(r"^([a-z ]+?)(?: \(.*\))?: (\d+)$", output, re.MULTILINE))
    return {name: int(count) for name, count in counts.items()}


# -- what the database holds ---------------------------------------------------------------


@dataclass
class Stored:
    users: dict[str, Any]  # canonical address -> (id, email)
    tokens: Counter[tuple[int, str]]  # (user id, purpose) -> how many one-time tokens
    outbox: list[Any]  # (id, message, recipient, status, attempts, last_error)
    denied: set[str]  # denylisted access-token jtis
    sessions: dict[str, str | None]  # session public id -> revoked reason

    def rows(self, message: str, address: str) -> list[Any]:
        key = canonical_email(address)
        return [
            r for r in self.outbox if r.message == message and canonical_email(r.recipient) == key
        ]

    def statuses(self) -> Counter[str]:
        return Counter(r.status for r in self.outbox)


def read_database(url: str) -> Stored:
    """Read what the server committed, straight from the database (no app, no cache)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            users = {
                row.email_canonical: row
                for row in conn.execute(select(User.id, User.email, User.email_canonical))
            }
            tokens = Counter(
                (row.user_id, row.purpose)
                for row in conn.execute(select(OneTimeToken.user_id, OneTimeToken.purpose))
            )
            outbox = conn.execute(
                select(
                    OutboxMail.id,
                    OutboxMail.message,
                    OutboxMail.recipient,
                    OutboxMail.status,
                    OutboxMail.attempts,
                    OutboxMail.last_error,
                ).order_by(OutboxMail.id)
            ).all()
            denied = set(conn.scalars(select(RevokedAccessToken.jti)))
            sessions = {
                row.public_id: row.revoked_reason
                for row in conn.execute(
                    select(RefreshSession.public_id, RefreshSession.revoked_reason)
                )
            }
    finally:
        engine.dispose()
    return Stored(users, tokens, list(outbox), denied, sessions)


def empty_database(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for table in reversed(db.metadata.sorted_tables):
                conn.execute(delete(table))
    finally:
        engine.dispose()


def assert_nothing_half_written(stored: Stored) -> None:
    """Every account has exactly one verification token and one verification mail, and every
    such mail an account; every resolved reset mail has its token and every reset token its
    mail (the resolver writes both in one transaction). A verification mail carries a reset
    token too (its "did not register?" link)."""
    verification_mails = Counter(
        canonical_email(r.recipient) for r in stored.outbox if r.message == VERIFY_EMAIL_MAIL
    )
    resolved_resets = Counter(
        canonical_email(r.recipient)
        for r in stored.outbox
        if r.message == PASSWORD_RESET_MAIL
        and r.status != REQUESTED
        and not (r.status == DROPPED and r.last_error in ("no_recipient", "throttled"))
    )
    for key, user in stored.users.items():
        assert stored.tokens[(user.id, VERIFY_EMAIL)] == 1, f"{user.email}: verification token"
        assert verification_mails[key] == 1, f"{user.email}: verification mail"
        issued_resets = resolved_resets[key] + verification_mails[key]
        assert stored.tokens[(user.id, PASSWORD_RESET)] == issued_resets, (
            f"{user.email}: reset tokens and reset mails differ"
        )
    assert set(verification_mails) <= set(stored.users), "a verification mail without account"
    assert set(resolved_resets) <= set(stored.users), "a reset mail without account"


def claimed_long_ago(url: str, ids: list[int]) -> None:
    if not ids:
        return
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(OutboxMail)
                .where(OutboxMail.id.in_(ids))
                .values(claimed_at=utcnow() - 2 * IN_DOUBT_AFTER)
            )
    finally:
        engine.dispose()


def session_claims(session: dict[str, Any]) -> dict[str, Any]:
    return jwt.decode(session["token"], options={"verify_signature": False})


def assert_logouts_all_or_nothing(stored: Stored, logouts: list[Outcome]) -> None:
    """Answered or cut, a logout either denylisted its token and revoked its session, or neither."""
    for outcome in logouts:
        claims = session_claims(outcome.key)
        denied = claims["jti"] in stored.denied
        reason = stored.sessions[claims["sid"]]
        assert denied == (reason is not None), (outcome, denied, reason)
        if outcome.status == SUCCESS["logout"]:
            assert denied and reason == "logout", outcome


def assert_revocations_hold(api: Api, stored: Stored, logouts: list[Outcome]) -> None:
    """Over HTTP the server agrees with the database: revoked is refused, the rest still works."""
    for outcome in logouts:
        session = outcome.key
        revoked = session_claims(session)["jti"] in stored.denied
        checked = api.verify_token(session["token"])
        assert checked.status_code == (401 if revoked else 200), (outcome, checked.text)
        if revoked:
            # Refreshing a live session would rotate it: only the revoked ones are tried.
            refreshed = api.refresh(session["refresh_token"])
            assert refreshed.status_code == 401, (outcome, refreshed.text)


def mails_with_link(mailbox: Mailbox, address: str, page: str) -> list[ReceivedMail]:
    """The mails whose (first) link is to `page`: a verification mail has a reset link too."""
    return [
        m for m in mailbox.to(address) if _first_link(m.text).startswith(f"{FRONTEND_URL}/{page}?")
    ]


def _first_link(text: str) -> str:
    match = re.search(r"https?://\S+", text)
    return match.group(0) if match else ""


# -- fixtures and set-up -------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_smtp() -> Iterator[SMTPServer]:
    """This module's own SMTP server, so that slowing it down slows no other test.

    Slowed down (`data_delay`), it keeps each message at once but says 250 later: mails queue
    up in the server's background jobs (rows stay `pending`), and a sender killed meanwhile
    leaves a mail that arrived with its row `sending`, the ambiguity that makes a row in doubt
    rather than due again.
    """
    server = SMTPServer(RefusingMailbox())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slow_server(
    e2e_database: dict[str, Any],
    slow_smtp: SMTPServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gunicorn]:
    """A server with slow hashing over the module's database, shared by this module's tests."""
    folder = tmp_path_factory.mktemp("crash")
    port = free_port()
    env = server_env(e2e_database, folder / "keys", port, slow_smtp.port, **SLOW_ARGON2)
    server = Gunicorn(env, port, folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def crash_server(slow_server: Gunicorn, slow_smtp: SMTPServer) -> Gunicorn:
    """The shared server, running, over a database emptied first: the test accounts for every
    row in it."""
    slow_smtp.mailbox.accept()
    if slow_server.process is None:  # an earlier test crashed it and failed before restarting
        slow_server.start()
    wait_until_every_worker_serves(slow_server)
    empty_database(slow_server.env["IDP_DATABASE_URL"])
    return slow_server


def verified_accounts(api: Api, mailbox: Mailbox, prefix: str, count: int) -> list[str]:
    emails = [unique_email(prefix) for _ in range(count)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        for response in pool.map(api.register, emails):
            assert response.status_code == 201, response.text
        tokens = [mailbox.wait_for(email, timeout=15)[0].token for email in emails]
        for response in pool.map(lambda t: api.post("verify-email", {"token": t}), tokens):
            assert response.status_code == 200, response.text
    return emails


def logged_in(api: Api, emails: list[str]) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(CLIENTS) as pool:
        responses = list(pool.map(api.login, emails))
    for response in responses:
        assert response.status_code == 200, response.text
    return [response.json()["data"] for response in responses]


def prepared_burst(api: Api, mailbox: Mailbox) -> list[Callable[[], Outcome]]:
    sessions = logged_in(api, verified_accounts(api, mailbox, "logout", LOGOUTS))
    reset_addresses = verified_accounts(api, mailbox, "reset", RESETS)
    new_addresses = [unique_email("signup") for _ in range(REGISTRATIONS)]
    return mixed_calls(api, new_addresses, sessions, reset_addresses)


def of_kind(outcomes: list[Outcome], kind: str) -> list[Outcome]:
    return [o for o in outcomes if o.kind == kind]


def assert_answers_were_right(outcomes: list[Outcome]) -> None:
    """No 5xx and no hang: a request was either served as it should be, or its connection died."""
    for outcome in outcomes:
        assert outcome.failure in (None, "cut", "refused"), outcome
        if outcome.status is not None:
            assert outcome.status == SUCCESS[outcome.kind], outcome


def assert_acknowledged_writes_stored(stored: Stored, outcomes: list[Outcome]) -> None:
    for outcome in of_kind(outcomes, "register"):
        if outcome.status is not None:
            assert canonical_email(outcome.key) in stored.users, outcome
            assert len(stored.rows(VERIFY_EMAIL_MAIL, outcome.key)) == 1, outcome
    for outcome in of_kind(outcomes, "reset"):
        rows = stored.rows(PASSWORD_RESET_MAIL, outcome.key)
        # One request each: acknowledged means committed; cut means committed or not at all.
        assert len(rows) <= 1, outcome
        if outcome.status is not None:
            assert len(rows) == 1, outcome
    assert_logouts_all_or_nothing(stored, of_kind(outcomes, "logout"))


def summary(outcomes: list[Outcome]) -> str:
    counts = Counter(
        (o.kind, str(o.status) if o.status is not None else str(o.failure)) for o in outcomes
    )
    return ", ".join(f"{kind} {result}: {n}" for (kind, result), n in sorted(counts.items()))


# -- a worker killed -------------------------------------------------------------------------


def test_a_killed_worker_loses_at_most_its_own_request_and_leaves_nothing_half_written(
    crash_server, slow_smtp
):
    server = crash_server
    api = Api(server)
    database_url = server.env["IDP_DATABASE_URL"]
    calls = prepared_burst(api, slow_smtp.mailbox)
    booted_before = server.worker_pids()
    killed: list[str] = []

    with Burst(calls) as burst:
        # Kill the worker that has just answered: it has committed, its mail job is under way
        # and, with requests queued, it has most likely accepted the next one.
        just_answered = burst.answered(KILL_AFTER)
        killed.append(kill_worker(server, server.served_by(just_answered.probe)))
        outcomes = burst.results()

    assert_answers_were_right(outcomes)
    cut = [o for o in outcomes if o.failure is not None]
    # A sync worker holds one request; what waited in the backlog went to another worker.
    assert all(o.failure == "cut" for o in cut), cut
    assert len(cut) <= len(killed), cut
    wait_until_every_worker_serves(server)
    # One replacement for each worker killed, and no other worker died.
    assert len(server.worker_pids() - booted_before) == len(killed)
    log = server.error_log.read_text()
    for pid in killed:
        assert f"Worker (pid:{pid}) was sent SIGKILL!" in log
    assert "Traceback" not in log, log

    stored = read_database(database_url)
    assert_nothing_half_written(stored)
    assert_acknowledged_writes_stored(stored, outcomes)
    assert_revocations_hold(api, stored, of_kind(outcomes, "logout"))
    # A logged-out token is refused by every worker, the replacement too.
    logged_out = next(o.key for o in of_kind(outcomes, "logout") if o.status is not None)

    def refused(response: Any) -> None:
        assert response.status_code == 401, response.text

    server.on_every_worker(lambda p: api.verify_token(logged_out["token"], params=p), refused)
    # At most once, whatever the background jobs of the killed workers were doing.
    for key, user in stored.users.items():
        assert len(mails_with_link(slow_smtp.mailbox, user.email, "verify-email")) <= 1, key
    print(
        f"\nworker kill: {summary(outcomes)}; cut {len(cut)} by {len(killed)} kills; "
        f"outbox {dict(stored.statuses())}"
    )


# -- the whole server killed -----------------------------------------------------------------


def test_a_killed_server_restarts_with_every_acknowledged_write_and_mails_each_once(
    crash_server, slow_smtp
):
    server = crash_server
    api = Api(server)
    mailbox = slow_smtp.mailbox
    assert isinstance(mailbox, RefusingMailbox)
    database_url = server.env["IDP_DATABASE_URL"]
    calls = prepared_burst(api, mailbox)

    # Slow SMTP during the burst: at the crash some mails are still queued (rows `pending` or
    # `requested`) and some are in the middle of their conversation (rows `sending`).
    mailbox.data_delay = SMTP_DELAY_DURING_BURST
    with Burst(calls) as burst:
        burst.answered(KILL_AFTER)
        crash(server)
        mailbox.accept()
        outcomes = burst.results()

    assert_answers_were_right(outcomes)
    # What the crash left: nothing half-written, every acknowledged write there.
    left = read_database(database_url)
    assert_nothing_half_written(left)
    assert_acknowledged_writes_stored(left, outcomes)
    assert "Traceback" not in server.error_log.read_text()
    in_doubt = {r.id: r for r in left.outbox if r.status == SENDING}
    # A claimed row is counted as in doubt once it has been claimed for longer than a live
    # sender may take (IN_DOUBT_AFTER): moved back in time here, as if the operator came later.
    claimed_long_ago(database_url, list(in_doubt))

    # Start again (same port, database and keys folder) while the operator delivers what is due.
    with ThreadPoolExecutor(1) as pool:
        restarted = pool.submit(server.start)
        sent_output = flask_cli(server.env, *SEND_PENDING)
        restarted.result()
    # ... then looks at the queue (in the background: the checks below write no mail).
    pool = ThreadPoolExecutor(1)
    queue_status = pool.submit(mail_status, server.env)
    pool.shutdown(wait=False)

    # Everything due went out; only the rows the crash left `sending` are still there, untouched.
    left_statuses = left.statuses()
    due = left_statuses[REQUESTED] + left_statuses[PENDING]
    delivered = Counter({s: int(n) for n, s in re.findall(r"(\d+) (\w+)", sent_output)})
    assert delivered == Counter({SENT: due}), sent_output
    stored = read_database(database_url)
    statuses = stored.statuses()
    assert statuses[REQUESTED] == statuses[PENDING] == 0, statuses
    assert set(statuses) <= {SENT, SENDING}, statuses
    assert {r.id: r for r in stored.outbox if r.status == SENDING} == in_doubt
    assert_nothing_half_written(stored)
    assert_acknowledged_writes_stored(stored, outcomes)

    # Every account has had its verification mail exactly once, unless its row is in doubt:
    # then at most once (the crash hit between the claim and the end of the conversation).
    verification_rows = {
        canonical_email(r.recipient): r for r in stored.outbox if r.message == VERIFY_EMAIL_MAIL
    }
    setup_accounts = {
        canonical_email(o.key["user"]["email"]) for o in of_kind(outcomes, "logout")
    } | {canonical_email(o.key) for o in of_kind(outcomes, "reset")}
    links = []
    for key, user in stored.users.items():
        mails = mails_with_link(mailbox, user.email, "verify-email")
        if verification_rows[key].status == SENT:
            assert len(mails) == 1, (user.email, len(mails))
        else:
            assert len(mails) <= 1, (user.email, len(mails))
        if key not in setup_accounts:  # the set-up accounts have spent theirs already
            links.extend(mail.token for mail in mails)
    in_doubt_accounts = sum(r.status == SENDING for r in verification_rows.values())
    sent_accounts = sum(r.status == SENT for r in verification_rows.values())
    assert len(stored.users) == sent_accounts + in_doubt_accounts
    # Each of those links works after the restart.
    with ThreadPoolExecutor(CLIENTS) as pool:
        for response in pool.map(lambda t: api.post("verify-email", {"token": t}), links):
            assert response.status_code == 200, response.text

    # Every logout that was acknowledged still holds: token and refresh token refused.
    assert_revocations_hold(api, stored, of_kind(outcomes, "logout"))

    # Every acknowledged reset mailed its link once (unless in doubt), and the link works.
    confirmations = []
    for outcome in of_kind(outcomes, "reset"):
        rows = stored.rows(PASSWORD_RESET_MAIL, outcome.key)
        mails = mails_with_link(mailbox, outcome.key, "reset-password")
        if rows and rows[0].status == SENT:
            assert len(mails) == 1, outcome
        else:
            assert len(mails) <= 1, outcome
        confirmations.extend((outcome.key, mail.token) for mail in mails)

    def confirm(address_and_token: tuple[str, str]) -> tuple[Any, Any]:
        address, token = address_and_token
        body = {"token": token, "new_password": NEW_PASSWORD}
        return api.post("password-reset-confirm", body), api.login(address, NEW_PASSWORD)

    with ThreadPoolExecutor(CLIENTS) as pool:
        for confirmed, login in pool.map(confirm, confirmations):
            assert confirmed.status_code == 200, confirmed.text
            assert login.status_code == 200, login.text

    # `mail status` reports the rows in doubt, and nothing else left to do.
    status = queue_status.result(timeout=60)
    assert status[SENDING] == status["in doubt"] == len(in_doubt), status
    assert status[REQUESTED] == status[PENDING] == status["due now"] == 0, status
    assert status[SENT] == statuses[SENT], status
    log = server.error_log.read_text()
    assert "Traceback" not in log, log
    print(
        f"\nserver kill: {summary(outcomes)}; the crash left {dict(left_statuses)}; "
        f"send-pending sent {delivered[SENT]}; in doubt {len(in_doubt)}; "
        f"accounts {len(stored.users)} = {sent_accounts} mailed + {in_doubt_accounts} in doubt"
    )
