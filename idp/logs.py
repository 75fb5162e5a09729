"""One log: every record of the server, its workers, the mail worker and the CLI on stderr, as
one JSON object per line (IDP_LOG_FORMAT=json) or as readable text (text, for development).

A line has `ts` (RFC 3339, UTC), `level`, `logger`, `msg` and `request_id` (the request's, or
null); an access line adds method, path (no query string), status, bytes, duration, the client
address after the trusted-proxy rule and the user agent; an audit line is its event's fields
(idp.audit) with `level` and `logger`. gunicorn's own logs go through GunicornLogger.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

from gunicorn import glogging

JSON = "json"
TEXT = "text"
FORMATS = (JSON, TEXT)


def rfc3339(moment: datetime) -> str:
    """An aware time in RFC 3339, UTC, to the millisecond (every line's `ts`)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def timestamp(created: float) -> str:
    """A record's time (seconds since the epoch) in RFC 3339."""
    return rfc3339(datetime.fromtimestamp(created, tz=UTC))


def current_request_id() -> str | None:
    """The id of the request being served, if any."""
    from flask import g, has_request_context

    return g.get("request_id") if has_request_context() else None


def _dumps(payload: dict[str, Any]) -> str:
    # A newline in a value is escaped by JSON: one record is always one line.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)


class JSONFormatter(logging.Formatter):
    """A record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        audit = getattr(record, "audit", None)
        if audit is not None:
            return _dumps({**audit, "level": record.levelname, "logger": record.name})
        payload: dict[str, Any] = {
            "ts": timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": current_request_id(),
        }
        access = getattr(record, "access", None)
        if access is not None:
            payload.update(access)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return _dumps(payload)


class TextFormatter(logging.Formatter):
    """A record as a readable line: time, level, logger, request id, message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "access", {}).get("request_id") or current_request_id()
        record.request = f" [{request_id}]" if request_id else ""
        return super().format(record)


def formatter(log_format: str) -> logging.Formatter:
    return TextFormatter() if log_format == TEXT else JSONFormatter()


def configure(log_format: str, level: str) -> None:
    """Send every record to stderr in one format, unless the host (pytest) set up logging."""
    logging.getLogger("idp").setLevel(level.upper())
    # Alembic (bound under every `flask` command) names each of its plugins at INFO: noise.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


class GunicornLogger(glogging.Logger):
    """gunicorn's error and access logs in the server's format, access lines as fields."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        chosen = formatter(os.environ.get("IDP_LOG_FORMAT", JSON).strip().lower())
        logs = (
            [self.error_log] if self._custom_access_format() else [self.error_log, self.access_log]
        )
        for log in logs:
            for handler in log.handlers:
                handler.setFormatter(chosen)

    def _custom_access_format(self) -> bool:
        # An operator who asked for an --access-logformat of their own gets it, as written.
        return self.cfg.access_log_format != self.cfg.settings["access_log_format"].default

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        if self._custom_access_format():
            super().access(resp, req, environ, request_time)
            return
        headers = {name.lower(): value for name, value in resp.headers}
        fields = {
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "status": resp.status_code,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            # After ProxyFix (IDP_TRUSTED_PROXIES), which rewrites the environ in place.
            "client_address": environ.get("REMOTE_ADDR"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
            "request_id": headers.get("x-request-id"),
        }
        self.access_log.info(
            "%s %s %s", fields["method"], fields["path"], fields["status"], extra={"access": fields}
        )
