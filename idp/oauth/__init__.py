"""The OAuth 2.0 / OpenID protocol: /oauth/* endpoints and the /.well-known/ documents."""

from idp.http.surfaces import Surface
from idp.oauth.views import bp

# RFC wire formats: errors as {error, error_description} (Authlib renders the protocol's own);
# the token endpoints set no-store themselves and the public documents their own caching.
# Browsers on IDP_CORS_ORIGINS may call /oauth/*; discovery and JWKS allow any origin.
SURFACE = Surface(
    "oauth",
    blueprints=(bp,),
    prefixes=("/oauth/", "/.well-known/"),
    cors_prefixes=("/oauth/",),
)

__all__ = ["SURFACE", "bp"]
