"""The discovery document (RFC 8414, OpenID Connect Discovery 1.0): what this server offers.

Everything listed is implemented; nothing implemented is left out (tests check both ways).
"""

from __future__ import annotations

from typing import Any

from idp.config import Settings

# The scopes a relying app may ask for (a client gets only those it was registered with).
OPENID_SCOPES = ["openid", "profile", "email", "offline_access"]
CLAIMS = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "sid",
    "azp",
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
]


def discovery_document(settings: Settings) -> dict[str, Any]:
    """Describe this server per RFC 8414 and OpenID Connect Discovery."""
    issuer = settings.issuer
    client_auth = ["client_secret_basic", "client_secret_post"]
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "userinfo_endpoint": f"{issuer}/oauth/userinfo",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "end_session_endpoint": f"{issuer}/oauth/logout",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": OPENID_SCOPES,
        "claims_supported": CLAIMS,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "access_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": [*client_auth, "none"],
        "revocation_endpoint_auth_methods_supported": [*client_auth, "none"],
        "introspection_endpoint_auth_methods_supported": client_auth,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
    }
