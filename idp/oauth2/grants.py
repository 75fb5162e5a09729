"""Token-endpoint grants: client_credentials, and refresh_token with our rotation."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
)

from idp import audit
from idp.clock import utcnow
from idp.errors import InvalidRefreshToken
from idp.services.registry import get_services


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_requested_scope(self) -> None:
        requested = self.request.payload.scope
        if requested and not set(requested.split()) <= set(self.client.scope.split()):
            raise InvalidScopeError()


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Refresh with rotation and reuse detection, shared with /api/v1/auth/token/refresh/."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def validate_token_request(self) -> None:
        client = self._validate_request_client()
        self.request.client = client
        raw = self.request.form.get("refresh_token")
        if not raw:
            raise InvalidRequestError("Missing 'refresh_token' in request.")
        requested = self.request.payload.scope
        if requested:
            # Narrowing is not offered: a scope parameter must repeat the original grant.
            row = get_services().sessions.find_by_refresh_token(raw)
            if row is None or set(requested.split()) != set(row.session.scope.split()):
                raise InvalidScopeError()

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        raw = self.request.form["refresh_token"]
        try:
            pair = get_services().sessions.rotate(raw, self.client.get_client_id(), utcnow())
        except InvalidRefreshToken as exc:
            raise InvalidGrantError() from exc
        body = {
            "access_token": pair.access_token,
            "token_type": "Bearer",
            "expires_in": pair.expires_in,
            "refresh_token": pair.refresh_token,
            "scope": pair.scope,
        }
        return 200, body, self.TOKEN_RESPONSE_HEADER


def generate_client_token(
    grant_type: str,
    client: Any,
    user: Any = None,
    scope: str | None = None,
    expires_in: int | None = None,
    include_refresh_token: bool = True,
) -> dict[str, Any]:
    """Mint the access token of a client_credentials grant (RFC 9068: sub is the client)."""
    granted = client.get_allowed_scope(scope)
    issued = get_services().access_tokens.issue(
        subject=client.get_client_id(),
        client_id=client.get_client_id(),
        scope=granted,
        now=utcnow(),
    )
    audit.record(
        "token.issued",
        "success",
        client_id=client.get_client_id(),
        scope=granted,
        jti=issued.claims["jti"],
    )
    return {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": granted,
    }
