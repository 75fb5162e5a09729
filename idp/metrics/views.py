"""GET /metrics on the main port, for a bearer of IDP_METRICS_TOKEN (registered only when set)."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app

from idp.database import one_off_engine
from idp.errors import InvalidAccessToken, MissingAccessToken
from idp.http.surfaces import Surface
from idp.metrics import exposition
from idp.metrics.state import StateCollector
from idp.oauth.bearer import bearer_token
from idp.services.registry import get_services

bp = Blueprint("metrics", __name__)
EXTENSION_KEY = "idp.metrics.state"


@bp.get("/metrics")
def metrics() -> Response:
    """The Prometheus text exposition; 401 without the metrics token."""
    settings = current_app.config["IDP"]
    token = bearer_token()
    if token is None:
        raise MissingAccessToken()
    if not hmac.compare_digest(token.encode(), settings.metrics_token.encode()):
        raise InvalidAccessToken()
    state = current_app.extensions.get(EXTENSION_KEY)
    if state is None:
        state = StateCollector(one_off_engine(settings.database_url), get_services().keys)
        current_app.extensions[EXTENSION_KEY] = state
    return Response(exposition.render(state), content_type=exposition.CONTENT_TYPE)


# For Prometheus only: never cached, JSON errors, no rate limit (a wrong token is 256 bits off).
SURFACE = Surface("metrics", blueprints=(bp,), prefixes=("/metrics",), no_store=True)
