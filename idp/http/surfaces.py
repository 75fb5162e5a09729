"""HTTP surfaces: each part of the server that answers HTTP declares its own policy.

A surface (the JSON API, the OAuth endpoints, the probes, the hosted pages) owns
some blueprints and URL prefixes, renders its own errors, and says which Content-Security-Policy
its answers carry and whether they may be cached. The policy of an answer is its view's
surface's, or, for an answer no view made (an unknown path, a 405, a 413 before routing), the
surface whose prefix the path has, or the default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from idp.errors import IdPError

EXTENSION_KEY = "idp.surfaces"
# Nothing may load, run or frame: right for JSON, which a browser must never render.
LOCKED_DOWN_CSP = "default-src 'none'; frame-ancestors 'none'"


def json_error(error: IdPError) -> Response:
    """An error in the RFC 6749/6750 shape: {error, error_description}."""
    response = jsonify(error=error.oauth_code or error.code, error_description=error.message)
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


@dataclass(frozen=True)
class Surface:
    """One surface's HTTP policy, declared where the surface is defined."""

    name: str
    blueprints: Sequence[Blueprint] = ()
    # Paths it owns when no view of it answered (404, 405, 413 before routing).
    prefixes: tuple[str, ...] = ()
    render_error: Callable[[IdPError], Response] = json_error
    content_security_policy: str = LOCKED_DOWN_CSP
    # Cache-Control: no-store on every answer, unless its view declared it public.
    no_store: bool = False
    # Paths that browsers on IDP_CORS_ORIGINS may call (flask-cors; no credentials).
    cors_prefixes: tuple[str, ...] = ()
    # Whether its prefixes get the signed cookie session (the hosted pages' CSRF tokens).
    cookie_session: bool = False


DEFAULT = Surface("default")


@dataclass(frozen=True)
class Surfaces:
    """The registered surfaces of one application, indexed for the per-request look-up."""

    by_blueprint: dict[str, Surface]
    by_prefix: tuple[tuple[str, Surface], ...]  # longest prefix first
    cors_prefixes: tuple[str, ...]
    session_prefixes: tuple[str, ...] = ()


def register(app: Flask, surfaces: Sequence[Surface]) -> Surfaces:
    """Register every surface's blueprints and remember whose policy applies where."""
    by_blueprint: dict[str, Surface] = {}
    prefixes: list[tuple[str, Surface]] = []
    for surface in surfaces:
        for blueprint in surface.blueprints:
            app.register_blueprint(blueprint)
            by_blueprint[blueprint.name] = surface
        prefixes.extend((prefix, surface) for prefix in surface.prefixes)
    longest_first = tuple(sorted(prefixes, key=lambda pair: -len(pair[0])))
    cors = tuple(prefix for surface in surfaces for prefix in surface.cors_prefixes)
    sessions = tuple(
        prefix for surface in surfaces if surface.cookie_session for prefix in surface.prefixes
    )
    registered = Surfaces(by_blueprint, longest_first, cors, sessions)
    app.extensions[EXTENSION_KEY] = registered
    return registered


def registered_surfaces() -> Surfaces:
    """The surfaces of the current application."""
    return current_app.extensions[EXTENSION_KEY]


def current_surface() -> Surface:
    """The surface whose policy the current request's answer follows."""
    registered = registered_surfaces()
    surface = registered.by_blueprint.get(request.blueprint or "")
    if surface is not None:
        return surface
    path = request.path
    for prefix, owner in registered.by_prefix:
        if path.startswith(prefix):
            return owner
    return DEFAULT
