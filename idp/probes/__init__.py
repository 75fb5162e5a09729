"""The probes: GET /healthz (the process answers) and GET /readyz (it can serve: database, Redis,
key); the checks are idp.services.readiness.

Meant for load balancers and orchestrators: no rate limit, no caching, no internal details.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from idp.http.surfaces import Surface
from idp.services.registry import get_services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: answer without touching the database or any other dependency."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: 200 when every dependency answers, 503 naming the ones that did not."""
    readiness = get_services().readiness.check()
    if readiness.ready:
        return jsonify(status="ready", checks=readiness.checks)
    response = jsonify(status="unavailable", checks=readiness.checks)
    response.status_code = 503
    return response


# For load balancers and orchestrators: a probe's answer is about now, never cached.
SURFACE = Surface("probes", blueprints=(bp,), prefixes=("/healthz", "/readyz"), no_store=True)
