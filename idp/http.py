"""Cross-cutting HTTP behaviour: request ids, security headers, and the error translator."""

from __future__ import annotations

import io
import logging
import re
import secrets
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from flask.sessions import SessionInterface, SessionMixin
from flask_cors import CORS
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from idp import audit, database
from idp.api import envelope
from idp.errors import (
    IdPError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
)
from idp.extensions import db
from idp.rate_limits import seconds_until_reset

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
CORS_PREFIXES = ("/api/", "/oauth/")  # the paths that take cross-origin calls (flask-cors)
FOLDED_PREFIX = "/api/v1/auth/"
_HTTP_TO_ERROR: dict[int, type[IdPError]] = {
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


class NormalizeAPIPath:
    """WSGI middleware: one spelling per /api/v1/auth endpoint.

    Case, repeated slashes and a missing trailing slash are folded before routing, so
    `/API//v1/auth/login` reaches the same view (and later the same rate-limit key) as
    `/api/v1/auth/login/`, without a redirect that a POST would not survive.
    """

    _slashes = re.compile(r"/{2,}")

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        folded = self._slashes.sub("/", path)
        if folded.lower().startswith(FOLDED_PREFIX):
            folded = folded.lower()
            if not folded.endswith("/"):
                folded += "/"
            environ["PATH_INFO"] = folded
        return self.wsgi_app(environ, start_response)


class BoundUnsizedBody:
    """WSGI middleware: a body sent without Content-Length (chunked) gets one, or a 413.

    Werkzeug limits such a stream to MAX_CONTENT_LENGTH by silently cutting it, so a chunked
    body over the limit would be parsed from its first bytes instead of refused. Here the body
    is read up to one byte past the limit and handed on with its length, so an oversized one
    meets the same 413 as a body whose Content-Length says so.
    """

    _read_size = 64 * 1024

    def __init__(self, wsgi_app: Any, limit: int) -> None:
        self.wsgi_app = wsgi_app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            stream = environ["wsgi.input"]
            chunks: list[bytes] = []
            remaining = self.limit + 1
            while remaining > 0:
                chunk = stream.read(min(remaining, self._read_size))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            body = b"".join(chunks)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            # Werkzeug ignores Content-Length while Transfer-Encoding says chunked.
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.wsgi_app(environ, start_response)


class NoSessions(SessionInterface):
    """No cookie session: callers authenticate with bearer tokens, never with a cookie.

    Flask's default signed-cookie session builds a signer for every request, and any code that
    wrote to `flask.session` would hand the browser a cookie. Here `session` is Flask's null
    session, which refuses writes.
    """

    def open_session(self, app: Flask, request: Any) -> SessionMixin | None:
        return None  # Flask falls back to its null session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        return None


def init_app(app: Flask) -> None:
    """Attach path folding, request ids, security headers and error handlers."""
    app.session_interface = NoSessions()
    app.wsgi_app = NormalizeAPIPath(app.wsgi_app)  # type: ignore[method-assign]
    app.wsgi_app = BoundUnsizedBody(  # type: ignore[method-assign]
        app.wsgi_app, app.config["MAX_CONTENT_LENGTH"]
    )
    settings = app.config["IDP"]
    # The API is called with bearer tokens from browsers on these origins only; no cookies, so
    # no credentials mode. Discovery and JWKS set their own wildcard (idp.oauth.views).
    CORS(
        app,
        resources={
            f"{prefix}*": {"origins": settings["IDP_CORS_ORIGINS"]} for prefix in CORS_PREFIXES
        },
        supports_credentials=False,
        allow_headers=["Authorization", "Content-Type"],
        methods=["GET", "HEAD", "POST"],  # all the API and OAuth endpoints take
        max_age=600,
    )
    if settings["IDP_ISSUER"].startswith("https://"):
        app.config["IDP_HSTS"] = "max-age=31536000; includeSubDomains"
    hops = settings["IDP_TRUSTED_PROXIES"]
    if hops:
        # Trust exactly this many X-Forwarded-* hops; with 0 the header is ignored entirely.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    app.before_request(_assign_request_id)
    app.after_request(_security_headers)
    app.register_error_handler(IdPError, _handle_idp_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)


def _assign_request_id() -> None:
    g.request_id = secrets.token_hex(8)


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
    # Whether the answer carries Access-Control-Allow-Origin depends on the Origin header, also
    # when it does not (an unlisted origin): a shared cache must key on it.
    origins = current_app.config["IDP"]["IDP_CORS_ORIGINS"]
    varies = origins and request.path.startswith(CORS_PREFIXES)
    if varies and "Origin" not in headers.get("Vary", ""):
        headers.add("Vary", "Origin")
    if request.path.startswith(API_PREFIX) and not response.cache_control.public:
        # Tokens and user data: never in a shared or browser cache. Only an answer its view
        # declared public (the OpenAPI document) keeps its own Cache-Control.
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"
    hsts = current_app.config.get("IDP_HSTS")
    if hsts:
        headers.setdefault("Strict-Transport-Security", hsts)
    if "request_id" in g:
        headers["X-Request-ID"] = g.request_id
    return response


def _render(error: IdPError) -> Response:
    if request.path.startswith(API_PREFIX):
        return envelope.failure(
            error.message, error.status, error.code, error.errors, error.headers
        )
    # Outside the API: the bearer-token error shape of RFC 6750.
    body = {"error": error.oauth_code or error.code, "error_description": error.message}
    response = jsonify(body)
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def _rollback() -> None:
    """End the request's transaction; an error here must not hide the original one."""
    try:
        db.session.rollback()
    except Exception as exc:
        if not database.is_unavailable(exc):
            log.warning("rollback failed", exc_info=True)


def _handle_idp_error(error: IdPError) -> Response:
    _rollback()
    return _render(error)


def _handle_http_exception(error: HTTPException) -> Response:
    _rollback()
    status = error.code or 500
    error_class = _HTTP_TO_ERROR.get(status)
    if status == 429:
        idp_error: IdPError = RateLimited(seconds_until_reset())
        audit.record(
            "rate_limit.exceeded", "denied", endpoint=request.endpoint, limit=error.description
        )
    elif error_class is not None:
        idp_error = error_class()
    else:
        idp_error = IdPError(error.description)
        idp_error.status = status
        idp_error.code = (error.name or "error").lower().replace(" ", "_")
    if status == 405:
        allow = error.get_response().headers.get("Allow")
        if allow:
            idp_error.headers = {**idp_error.headers, "Allow": allow}
    return _render(idp_error)


def _handle_unexpected(error: Exception) -> Response:
    _rollback()
    if database.is_unavailable(error):
        return _database_unavailable(error)
    log.exception("unhandled error", extra={"request_id": g.get("request_id")})
    return _render(IdPError())


def _database_unavailable(error: Exception) -> Response:
    """503 with Retry-After while the database cannot be reached; one log line, no traceback.

    An outage is an expected state, not a bug. The session is dropped so the next request
    starts from the pool, whose pre-ping replaces dead connections once the database is back.
    """
    request_id = g.get("request_id")
    lines = str(error).splitlines()  # the first names the cause; later ones hold the statement
    summary = lines[0] if lines else ""
    log.warning(
        "database unavailable (request %s): %s: %s",
        request_id,
        type(error).__name__,
        summary,
        extra={"request_id": request_id},
    )
    db.session.remove()
    return _render(ServiceUnavailable())
