"""The /api/v1/auth JSON facade, and the OpenAPI document that describes it."""

from idp.api import envelope
from idp.api.openapi import bp as openapi_bp
from idp.api.views import bp
from idp.http.surfaces import Surface

# JSON for programs: errors in the envelope, never cached (tokens and user data), callable from
# the browsers on IDP_CORS_ORIGINS.
SURFACE = Surface(
    "api",
    blueprints=(bp, openapi_bp),
    prefixes=("/api/",),
    render_error=envelope.from_error,
    no_store=True,
    cors_prefixes=("/api/",),
)

__all__ = ["SURFACE", "bp"]
