"""The claims a user's token may show (OIDC Core 5.4), for userinfo and the ID token."""

from __future__ import annotations

from typing import Any


def user_claims(user: Any, scopes: set[str] | frozenset[str]) -> dict[str, Any]:
    """Return `sub` and the claims the granted scopes cover (email, profile)."""
    claims: dict[str, Any] = {"sub": user.public_id}
    if "email" in scopes:
        claims["email"] = user.email
        claims["email_verified"] = user.email_verified_at is not None
    if "profile" in scopes:
        claims["name"] = f"{user.first_name} {user.last_name}".strip()
        claims["given_name"] = user.first_name
        claims["family_name"] = user.last_name
    return claims
