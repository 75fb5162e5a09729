"""The discovery document (RFC 8414, OpenID Connect Discovery 1.0): what this server offers."""

from __future__ import annotations

from typing import Any

from idp.config import Settings
from idp.services.sessions import API_SCOPE


def discovery_document(settings: Settings) -> dict[str, Any]:
    """Describe this server per RFC 8414 and OpenID Connect Discovery."""
    issuer = settings.issuer
    client_auth = ["client_secret_basic", "client_secret_post"]
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "token_endpoint": f"{issuer}/oauth/token",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "response_types_supported": [],
        "scopes_supported": sorted(API_SCOPE.split()),
        "token_endpoint_auth_methods_supported": [*client_auth, "none"],
        "revocation_endpoint_auth_methods_supported": [*client_auth, "none"],
        "introspection_endpoint_auth_methods_supported": client_auth,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "access_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "sid"],
    }
