"""Prometheus metrics: the catalogue of what idp counts, and the calls that count it.

Served at GET /metrics behind IDP_METRICS_TOKEN (idp.metrics.views) or on IDP_METRICS_BIND, a
loopback port of gunicorn's master (idp.metrics.port); off when neither is set. Under gunicorn
every worker writes its counts to files in PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py makes
one), and a scrape adds them up, so the numbers are the server's, not one worker's.

Security events are counted where they are audited (audit.record calls observe_audit), so the
metrics and the audit log cannot disagree. What is a state rather than an event (the mail
outbox, the signing keys) is read at scrape time (idp.metrics.state). Label values come from
short fixed lists, never from what a client sent, so no request can grow the series count.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from prometheus_client import Counter, Histogram, disable_created_metrics

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
_failed_once = False


def never_raises(count: F) -> F:
    """A count that fails (a full disk, a lost metrics folder) is given up, never the request:
    logged once per process, so an answer or a commit never turns into a 500 because of it."""

    @functools.wraps(count)
    def safely(*args: Any, **kwargs: Any) -> Any:
        global _failed_once
        try:
            return count(*args, **kwargs)
        except Exception as exc:
            if not _failed_once:
                _failed_once = True
                log.error("metrics: counting failed (%s); requests go on", type(exc).__name__)
            return None

    return safely  # type: ignore[return-value]


NAMESPACE = "idp"
# A `_created` series per counter doubles the output for a value Prometheus does not use.
disable_created_metrics()

HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
    namespace=NAMESPACE,
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from routing to the answer, by route template",
    ["route", "method"],
    namespace=NAMESPACE,
    buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LOGINS = Counter(
    "logins",
    "Sign-in attempts (API and hosted pages), by outcome",
    ["outcome"],
    namespace=NAMESPACE,
)
TOKENS_ISSUED = Counter(
    "tokens_issued",
    "Token responses, by grant (password: the API's login)",
    ["grant"],
    namespace=NAMESPACE,
)
REFRESH_REUSE = Counter(
    "refresh_token_reuse_detected",
    "Spent refresh tokens presented again (their session was revoked)",
    namespace=NAMESPACE,
)
CODE_REUSE = Counter(
    "authorization_code_reuse_detected",
    "Spent authorization codes presented again (what they minted was revoked)",
    namespace=NAMESPACE,
)
REVOCATIONS = Counter(
    "revocations",
    "Tokens or sessions ended before their time, by what ended them",
    ["reason"],
    namespace=NAMESPACE,
)
RATE_LIMIT_REFUSALS = Counter(
    "rate_limit_refusals",
    "Requests refused by a named limit (ip.* per address, user.* and email.* per account)",
    ["limit"],
    namespace=NAMESPACE,
)
CLIENT_AUTH_FAILURES = Counter(
    "client_auth_failures",
    "Failed OAuth client authentications, by reason",
    ["reason"],
    namespace=NAMESPACE,
)
DATABASE_ERRORS = Counter(
    "database_errors",
    "Database errors that say it is unreachable or failing, by SQLAlchemy error class",
    ["kind"],
    namespace=NAMESPACE,
)
REDIS_ERRORS = Counter(
    "redis_errors",
    "Failed Redis calls, by the part of idp that made them",
    ["component"],
    namespace=NAMESPACE,
)

# login.failure reasons that say "the credentials were wrong", whatever was wrong in them.
_BAD_CREDENTIALS = {"bad_password", "unknown_account", "password_too_long", "password_changed"}
# Audit events that end tokens or sessions, and the reason label each is counted under.
_REVOKING_EVENTS = {
    "session.logout": "logout",
    "token.revoked": "revocation_endpoint",
    "session.reuse_detected": "refresh_token_reuse",
    "authorization.code_reused": "authorization_code_reuse",
    "password_reset.confirmed": "password_reset",
    "consent.withdrawn": "consent_withdrawn",
    # user.disabled and user.signed_out are the CLI's, in a process of its own: not counted.
}
_GRANTS = {
    "login.success": "password",
    "session.refresh": "refresh_token",
    "token.issued": "client_credentials",
    "authorization.code_redeemed": "authorization_code",
}


# Every series an alert rule may compare starts at 0, so a rate() over it exists from the start.
for _outcome in ("success", "bad_credentials", "unverified", "disabled", "throttled"):
    LOGINS.labels(_outcome)
for _grant in _GRANTS.values():
    TOKENS_ISSUED.labels(_grant)
for _reason in (*_REVOKING_EVENTS.values(), "browser_sign_out"):
    REVOCATIONS.labels(_reason)


@never_raises
def observe_audit(event: str, outcome: str, fields: Mapping[str, object]) -> None:
    """Count what an audit event says (called by idp.audit.record for every event)."""
    reason = fields.get("reason")
    if event in ("login.success", "browser_session.started"):
        LOGINS.labels("success").inc()
    elif event == "login.failure":
        LOGINS.labels(_login_outcome(reason, fields.get("under_attack"))).inc()
        if reason == "throttled":
            RATE_LIMIT_REFUSALS.labels("user.login_source").inc()
        elif fields.get("under_attack"):
            RATE_LIMIT_REFUSALS.labels("user.login").inc()
    elif event == "client.auth_failure":
        CLIENT_AUTH_FAILURES.labels(str(reason)).inc()
    elif event == "browser_session.ended" and reason == "signed_out":
        REVOCATIONS.labels("browser_sign_out").inc()
    if outcome == "success" and event in _GRANTS:
        TOKENS_ISSUED.labels(_GRANTS[event]).inc()
    if event in _REVOKING_EVENTS and outcome != "failure":
        REVOCATIONS.labels(_REVOKING_EVENTS[event]).inc()
    if event == "session.reuse_detected":
        REFRESH_REUSE.inc()
    elif event == "authorization.code_reused":
        CODE_REUSE.inc()


def _login_outcome(reason: object, under_attack: object) -> str:
    if reason == "throttled" or under_attack:
        return "throttled"  # answered 429
    if reason == "unverified":
        return "unverified"
    if reason == "disabled":
        return "disabled"
    return "bad_credentials" if reason in _BAD_CREDENTIALS else "other"


@never_raises
def count_route_limit_refusal(limit: str) -> None:
    """A per-address route limit (flask-limiter) answered 429."""
    RATE_LIMIT_REFUSALS.labels(limit).inc()
    if limit == "ip.login":
        LOGINS.labels("throttled").inc()


@never_raises
def count_mail_cap_refusal() -> None:
    """The per-address mail cap kept a mail from being issued (the answer does not change)."""
    RATE_LIMIT_REFUSALS.labels("email.mail").inc()


# What says the database is unreachable or refusing work; a constraint violation (a taken
# address at sign-up) is an answer, not an error, and would let anyone move the count.
_DATABASE_ERROR_KINDS = frozenset(
    {"OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError", "InternalError"}
)


@never_raises
def count_database_error(error: BaseException) -> None:
    """Count an error that says the database is unreachable or failing, by its class name."""
    kind = type(error).__name__
    if kind in _DATABASE_ERROR_KINDS:
        DATABASE_ERRORS.labels(kind).inc()


@never_raises
def count_redis_error(component: str) -> None:
    """A Redis call failed; idp carried on (database, or in-process counters)."""
    REDIS_ERRORS.labels(component).inc()


class CountLimiterStorageErrors(logging.Filter):
    """Count the rate-limit storage failures flask-limiter reports (and swallows) in its log.

    flask-limiter offers no hook for a storage error: it logs a warning and carries on with
    its in-memory fallback. Attached to its logger, this counts each such record (and no other:
    a limit it skips or a callback that failed is not Redis's).
    """

    _storage_messages = ("Rate limit storage unreachable", "Failed to ")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and str(record.msg).startswith(self._storage_messages):
            count_redis_error("rate_limits")
        return True
