"""Audit log: one JSON object per line for every authentication event, never a secret in it.

Every line has `ts` (UTC, ISO 8601), `event`, `outcome`, `actor` (`http`, or `cli` for admin
commands), `request_id` and `client_address` (None outside a request), `user_id` (the public
id), then the event's own fields. EVENTS lists every event with its fields; the README's
"Audit log" section is a copy of that list.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, g, has_request_context, request

from idp import metrics
from idp.clock import utcnow
from idp.logs import JSONFormatter, rfc3339
from idp.services.addresses import canonical_email

LOGGER_NAME = "idp.audit"
logger = logging.getLogger(LOGGER_NAME)

SUCCESS, FAILURE, DENIED = "success", "failure", "denied"
# success: it was done. failure: what the caller presented did not check out.
# denied: refused by a rule (limit, reuse detection, unverified account) whatever it presented.


@dataclass(frozen=True)
class Event:
    """What one audit event may say: its outcomes, its own fields and, if any, its reasons.

    `reasons` lists the values `reason` may take; None means any short code (mail.dead names
    the SMTP reply or exception). The README's table is rendered from this (catalogue_table).
    """

    summary: str
    outcomes: frozenset[str]
    fields: frozenset[str] = frozenset()
    reasons: frozenset[str] | None = frozenset()


def _event(summary: str, outcomes: str, fields: str = "", reasons: str | None = "") -> Event:
    return Event(
        summary,
        frozenset(outcomes.split()),
        frozenset(fields.split()) | ({"reason"} if reasons != "" else set()),
        None if reasons is None else frozenset(reasons.split()),
    )


EVENTS: dict[str, Event] = {
    "user.register": _event(
        "an account was created, or its address was taken",
        "success failure",
        reasons="email_exists",
    ),
    "user.verify_email": _event("an address was verified", "success"),
    "login.success": _event("a session was opened", "success", "session_id client_id"),
    "login.failure": _event(
        "a login was refused; under_attack: the account-wide wall was full and the answer 429",
        "failure denied",
        "under_attack",
        "bad_password unknown_account password_too_long password_changed unverified disabled "
        "throttled",
    ),
    "session.refresh": _event(
        "a refresh token was rotated (grace: a sibling pair)",
        "success failure",
        "session_id client_id grace",
        "unknown_token expired wrong_client session_revoked inactive_user",
    ),
    "session.reuse_detected": _event(
        "a spent refresh token came back; its session was revoked", "denied", "session_id client_id"
    ),
    "session.logout": _event(
        "a session was ended", "success failure", "session_id jti", "token_mismatch"
    ),
    "password_reset.requested": _event(
        "a reset link was issued, or not (throttled: the mail cap, nothing issued)",
        "success failure denied",
        reasons="unknown_account throttled",
    ),
    "password_reset.confirmed": _event("a new password was set; every session ended", "success"),
    "rate_limit.exceeded": _event(
        "a per-address route limit refused a request", "denied", "endpoint limit"
    ),
    "token.issued": _event(
        "a client_credentials token was issued", "success", "client_id scope jti"
    ),
    "token.revoked": _event(
        "RFC 7009 revocation (kind: access or refresh)", "success", "kind client_id session_id jti"
    ),
    "client.auth_failure": _event(
        "a client failed to authenticate: a wrong secret, an unknown client_id, a method its "
        "registration does not allow, or no credentials at all",
        "failure",
        "client_id",
        "bad_secret unknown_client wrong_method missing_credentials",
    ),
    "client.created": _event("an OAuth client was created", "success", "client_id scope"),
    "client.deleted": _event("an OAuth client was deleted", "success", "client_id"),
    "client.secret_rotated": _event(
        "a confidential client got a new secret; the old one stopped working",
        "success",
        "client_id",
    ),
    "browser_session.started": _event(
        "a user signed in on the hosted pages (single sign-on starts)", "success", "session_id"
    ),
    "browser_session.ended": _event(
        "a browser session ended, with the refresh tokens issued through it",
        "success",
        "session_id",
        "signed_out replaced",
    ),
    "authorization.code_issued": _event(
        "an authorization code was sent to a client's redirect URI", "success", "client_id scope"
    ),
    "authorization.code_redeemed": _event(
        "a code was exchanged for tokens", "success", "client_id session_id"
    ),
    "authorization.code_refused": _event(
        "a code was refused at the token endpoint",
        "failure",
        "client_id",
        "unknown expired session_ended",
    ),
    "authorization.code_reused": _event(
        "a spent code came back; what it minted was revoked", "denied", "client_id session_id"
    ),
    "consent.granted": _event("a user approved a client's scopes", "success", "client_id scope"),
    "consent.withdrawn": _event(
        "a user withdrew a client's approval; its refresh tokens ended", "success", "client_id"
    ),
    "user.disabled": _event(
        "an admin disabled an account and ended its refresh (sessions) and browser sessions",
        "success",
        "sessions browser_sessions",
    ),
    "user.enabled": _event("an admin let a disabled account sign in again", "success"),
    "user.signed_out": _event(
        "an admin ended every refresh (sessions) and browser session of an account",
        "success",
        "sessions browser_sessions",
    ),
    "key.rotated": _event(
        "a signing key was made (staged: not yet signing)", "success", "kid staged"
    ),
    "key.activated": _event("a staged key began signing", "success", "kid"),
    "key.retired": _event("a key left JWKS, its private half deleted", "success", "kid"),
    "mail.dead": _event(
        "a queued mail was given up unsent", "failure", "mail_id message", reasons=None
    ),
}


# A field whose name contains one of these could hold a credential: refused whatever its value,
# so `token=...` cannot slip into the log through a careless call.
FORBIDDEN_NAME_PARTS = (
    "password",
    "passwd",
    "token",
    "secret",
    "link",
    "url",
    "key",
    "authorization",
    "cookie",
    "credential",
)
_RESERVED = frozenset(
    {
        "ts",
        "event",
        "outcome",
        "actor",
        "request_id",
        "client_address",
        "command",
        "user_id",
        "email_hash",
    }
)
_SCALARS = (str, int, float, bool, type(None))
# Third-party loggers that write issued tokens at DEBUG (Authlib: "Issue token {...} to ...").
# Pinned to INFO so that turning the root logger up to DEBUG cannot put a token in the log.
TOKEN_LOGGING_LIBRARIES = ("authlib",)

# Set while background work runs for a request, so its events keep the request's origin.
_carried_origin: ContextVar[dict[str, str | None] | None] = ContextVar(
    "idp_audit_origin", default=None
)


def init_app(app: Flask, audit_log: str | None = None) -> None:
    """Audit lines go with the other logs (idp.logs), or to `audit_log` (IDP_AUDIT_LOG)."""
    # Audit lines are INFO whatever IDP_LOG_LEVEL says about the other idp loggers.
    logger.setLevel(logging.INFO)
    for handler in [h for h in logger.handlers if getattr(h, "_idp_audit_file", False)]:
        logger.removeHandler(handler)
        handler.close()
    if audit_log:
        handler = logging.FileHandler(audit_log, encoding="utf-8")
        handler.setFormatter(JSONFormatter())
        handler._idp_audit_file = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False  # the file is the audit log; stderr has the rest
    else:
        logger.propagate = True
    for name in TOKEN_LOGGING_LIBRARIES:
        library = logging.getLogger(name)
        if library.level < logging.INFO:  # NOTSET included: it would follow the root down
            library.setLevel(logging.INFO)


def record(
    event: str,
    outcome: str,
    *,
    user_id: str | None = None,
    email: str | None = None,
    **fields: str | int | float | bool | None,
) -> None:
    """Write one audit event; `email` is logged only as `email_hash`, never as the address."""
    spec = EVENTS.get(event)
    if spec is None:
        raise ValueError(f"unknown audit event {event!r}: add it to idp.audit.EVENTS")
    if outcome not in spec.outcomes:
        raise ValueError(f"audit event {event!r} has no outcome {outcome!r}")
    for name, value in fields.items():
        _check_field(name, value)
        if name not in spec.fields:
            raise ValueError(f"audit event {event!r} has no field {name!r}: see idp.audit.EVENTS")
    reason = fields.get("reason")
    if reason is not None and spec.reasons is not None and reason not in spec.reasons:
        raise ValueError(f"audit event {event!r} has no reason {reason!r}")
    payload: dict[str, Any] = {"ts": rfc3339(utcnow()), "event": event, "outcome": outcome}
    payload.update(origin())
    payload["user_id"] = user_id
    if email is not None:
        payload["email_hash"] = email_hash(email)
    payload.update(fields)
    level = logging.INFO if outcome == "success" else logging.WARNING
    logger.log(level, _dumps(payload), extra={"audit": payload})
    metrics.observe_audit(event, outcome, fields)


def _check_field(name: str, value: object) -> None:
    lowered = name.lower()
    if lowered in _RESERVED:
        raise ValueError(f"audit field {name!r} is reserved")
    if any(part in lowered for part in FORBIDDEN_NAME_PARTS):
        raise ValueError(f"audit field {name!r} could hold a secret and is refused")
    if not isinstance(value, _SCALARS):
        # Dicts and objects (claims, forms, rows) could carry anything: only plain values.
        raise TypeError(f"audit field {name!r} must be a plain value, not {type(value).__name__}")


def _command() -> str | None:
    """The operator's command (`keys rotate`), without the program's name."""
    import click

    context = click.get_current_context(silent=True)
    if context is None:
        return None
    return " ".join(context.command_path.split()[1:]) or None


def origin() -> dict[str, str | None]:
    """Who caused the current work: the request's id and address, or the CLI."""
    carried = _carried_origin.get()
    if carried is not None:
        return dict(carried)
    if has_request_context():
        return {
            "actor": "http",
            "request_id": g.get("request_id"),
            "client_address": request.remote_addr,
        }
    return {"actor": "cli", "request_id": None, "client_address": None, "command": _command()}


@contextmanager
def on_behalf_of(request_origin: dict[str, str | None]) -> Iterator[None]:
    """Attribute the events of work done after a request (a background job) to that request."""
    token = _carried_origin.set(request_origin)
    try:
        yield
    finally:
        _carried_origin.reset(token)


def email_hash(email: str) -> str:
    """Return a short keyed digest of an address: repeated attempts on it correlate, it stays out.

    An email is personal data and, hashed plainly, is recovered by hashing a list of candidate
    addresses. Keyed with the server's secret it is a pseudonym to anyone holding only the logs.
    """
    # The accounts' own key: every spelling of one address, one digest; two addresses, two.
    canonical = canonical_email(email)
    secret = current_app.secret_key
    secret_bytes = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret or b"")
    key = hmac.new(secret_bytes, b"idp.audit.email_hash", hashlib.sha256).digest()
    return hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def _dumps(payload: dict[str, Any]) -> str:
    # ASCII with escapes: a field can never break the line or forge a second record.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True)


def catalogue_table() -> str:
    """The README's table of events, rendered from EVENTS (a test keeps the README in step)."""
    rows = ["| event | outcomes | fields | reasons | meaning |", "|---|---|---|---|---|"]
    for name, spec in EVENTS.items():
        fields = ", ".join(f"`{f}`" for f in sorted(spec.fields - {"reason"})) or "-"
        if spec.reasons is None:
            reasons = "any short code"
        else:
            reasons = ", ".join(f"`{r}`" for r in sorted(spec.reasons)) or "-"
        outcomes = ", ".join(o for o in (SUCCESS, FAILURE, DENIED) if o in spec.outcomes)
        rows.append(f"| `{name}` | {outcomes} | {fields} | {reasons} | {spec.summary} |")
    return "\n".join(rows) + "\n"
