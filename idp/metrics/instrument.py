"""What feeds the metrics besides the audit events: every request, database and Redis errors."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, request
from sqlalchemy import event

from idp.extensions import db
from idp.metrics import (
    HTTP_DURATION,
    HTTP_REQUESTS,
    CountLimiterStorageErrors,
    count_database_error,
    never_raises,
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
    with app.app_context():
        # The app's engine only: the metrics port's own engine (in gunicorn's master) must never
        # count, or a fork could copy prometheus-client's lock while that thread holds it.
        event.listen(db.engine, "handle_error", _count_database_error)
    _count_limiter_storage_errors()
    if requests:
        app.before_request(_start_clock)
        app.after_request(_count_request)


def _count_limiter_storage_errors() -> None:
    global _installed
    if not _installed:
        logging.getLogger("flask-limiter").addFilter(CountLimiterStorageErrors())
        _installed = True


def _start_clock() -> None:
    g.metrics_started = time.perf_counter()


def _count_request(response: Response) -> Response:
    _record(response)
    return response


@never_raises
def _record(response: Response) -> None:
    rule = request.url_rule
    route = rule.rule if rule is not None else UNMATCHED
    method = request.method if request.method in _METHODS else "other"
    HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        HTTP_DURATION.labels(route, method).observe(time.perf_counter() - started)


def _count_database_error(context: Any) -> None:
    count_database_error(context.sqlalchemy_exception or context.original_exception)
