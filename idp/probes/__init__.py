"""The probes: GET /healthz (the process answers) and GET /readyz (it can serve: database, Redis,
key); the checks are idp.services.readiness.

Meant for load balancers and orchestrators: no rate limit, no caching, no internal details.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from idp.services.registry import get_services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: answer without touching the database or any other dependency."""
    return _no_store(jsonify(status="ok"), 200)


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: 200 when every dependency answers, 503 naming the ones that did not."""
    readiness = get_services().readiness.check()
    if readiness.ready:
        return _no_store(jsonify(status="ready", checks=readiness.checks), 200)
    return _no_store(jsonify(status="unavailable", checks=readiness.checks), 503)


def _no_store(response: Response, status: int) -> Response:
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response
