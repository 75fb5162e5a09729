"""Cross-cutting HTTP: middleware, request ids, CORS, each surface's headers, one error translator.

What differs between surfaces (error rendering, Content-Security-Policy, caching) is declared
by each surface (idp.http.surfaces.Surface) where it is defined; what is here holds for all.
"""

from __future__ import annotations

import logging
import re
import secrets

from flask import Flask, Response, current_app, g, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from idp import database, transaction
from idp.errors import (
    IdPError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
)
from idp.extensions import db
from idp.http.middleware import BoundUnsizedBody, NormalizeAPIPath, NoSessions
from idp.http.surfaces import EXTENSION_KEY, Surface, current_surface, registered_surfaces
from idp.http.surfaces import register as register_surfaces
from idp.rate_limits import seconds_until_reset

# The name the operators' log filters know (and the tests look for).
log = logging.getLogger("idp.http")
# What a proxy's X-Request-ID may look like to be kept (a UUID, a hex or base64url token).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")

__all__ = ["Surface", "init_app", "register_surfaces"]

_HTTP_TO_ERROR: dict[int, type[IdPError]] = {
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


def init_app(app: Flask) -> None:
    """Attach path folding, request ids, CORS, the surfaces' headers and the error handlers."""
    registered = app.extensions[EXTENSION_KEY]  # from register_surfaces
    app.session_interface = NoSessions(registered.session_prefixes)
    app.wsgi_app = NormalizeAPIPath(app.wsgi_app)  # type: ignore[method-assign]
    app.wsgi_app = BoundUnsizedBody(  # type: ignore[method-assign]
        app.wsgi_app, app.config["MAX_CONTENT_LENGTH"]
    )
    settings = app.config["IDP"]
    cors_prefixes = registered.cors_prefixes
    origins = settings.cors_origins
    # Bearer tokens from browsers on these origins only; no cookies, so no credentials mode.
    # Discovery and JWKS set their own wildcard (idp.oauth.views).
    CORS(
        app,
        resources={f"{prefix}*": {"origins": origins} for prefix in cors_prefixes},
        supports_credentials=False,
        allow_headers=["Authorization", "Content-Type"],
        # What a browser app must read from an answer: when to retry after a 429, why a token
        # was refused, and the request id to quote in a support request.
        expose_headers=["Retry-After", "WWW-Authenticate", "X-Request-ID"],
        methods=["GET", "HEAD", "POST", "DELETE"],  # all the API and OAuth endpoints take
        max_age=600,
    )
    if settings.issuer.startswith("https://"):
        app.config["IDP_HSTS"] = "max-age=31536000; includeSubDomains"
    hops = settings.trusted_proxies
    if hops:
        # Trust exactly this many X-Forwarded-* hops; with 0 the header is ignored entirely.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    app.before_request(_assign_request_id)
    app.after_request(_security_headers)
    app.after_request(_end_transaction)  # after_request runs last-registered first
    app.register_error_handler(IdPError, _handle_idp_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)


def _end_transaction(response: Response) -> Response:
    """The request is the unit of work: a successful answer's changes are committed (and their
    after-commit hooks run) before it is sent. A failed one's are rolled back at teardown; a
    service that must keep something from a failed request commits it itself."""
    if response.status_code < 400 and db.session.registry.has() and db.session().in_transaction():
        try:
            transaction.commit()
        except Exception as error:
            # Raised here, it would reach Flask as an unhandled error (a bare 500 with a
            # traceback in the log); answered like any error of the request instead: a lost
            # database is a 503 with Retry-After, anything else the 500 envelope.
            return _handle_unexpected(error)
    return response


def _assign_request_id() -> None:
    # A trusted proxy's id joins our lines to its own; anything else gets a new one.
    given = request.headers.get("X-Request-ID", "")
    if current_app.config["IDP"].trusted_proxies and _REQUEST_ID.fullmatch(given):
        g.request_id = given
    else:
        g.request_id = secrets.token_hex(8)


def _security_headers(response: Response) -> Response:
    surface = current_surface()
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Content-Security-Policy", surface.content_security_policy)
    # Whether the answer carries Access-Control-Allow-Origin depends on the Origin header, also
    # when it does not (an unlisted origin): a shared cache must key on it.
    origins = current_app.config["IDP"].cors_origins
    varies = origins and request.path.startswith(registered_surfaces().cors_prefixes)
    if varies and "Origin" not in headers.get("Vary", ""):
        headers.add("Vary", "Origin")
    if surface.no_store and not response.cache_control.public:
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
    return current_surface().render_error(error)


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
    if status == 429:  # audited by the limiter (idp.rate_limits)
        idp_error: IdPError = RateLimited(seconds_until_reset())
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
