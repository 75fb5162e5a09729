"""What feeds the metrics besides the audit events: every request, database and Redis errors."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, request
from sqlalchemy import event
from sqlalchemy.engine import Engine

from idp.metrics import (
    HTTP_DURATION,
    HTTP_REQUESTS,
    CountLimiterStorageErrors,
    count_database_error,
)

# Any other method is counted as "other": a client cannot add series by inventing methods.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Routing failed (404, 405): counted together, so unknown paths do not add series either.
UNMATCHED = "unmatched"
_installed = False


def init_app(app: Flask, requests: bool) -> None:
    """Count database and rate-limit storage errors; with `requests`, count and time every
    request of `app` (metrics are served: no cost otherwise).

    Call it before the other request hooks are registered: its before_request then runs first
    and its after_request last (Flask runs those last registered first), so the status counted
    is the one sent and the time includes every other hook.
    """
    install_error_counters()
    if requests:
        app.before_request(_start_clock)
        app.after_request(_count_request)


def install_error_counters() -> None:
    """Count database driver errors and rate-limit storage failures, once per process."""
    global _installed
    if _installed:
        return
    event.listen(Engine, "handle_error", _count_database_error)
    logging.getLogger("flask-limiter").addFilter(CountLimiterStorageErrors())
    _installed = True


def _start_clock() -> None:
    g.metrics_started = time.perf_counter()


def _count_request(response: Response) -> Response:
    rule = request.url_rule
    route = rule.rule if rule is not None else UNMATCHED
    method = request.method if request.method in _METHODS else "other"
    HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        HTTP_DURATION.labels(route, method).observe(time.perf_counter() - started)
    return response


def _count_database_error(context: Any) -> None:
    count_database_error(context.sqlalchemy_exception or context.original_exception)
