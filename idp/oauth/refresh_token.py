"""The refresh_token grant (RFC 6749 6) with rotation and reuse detection (RFC 9700 4.14)."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
)

from idp.clock import utcnow
from idp.errors import InvalidRefreshToken
from idp.services.registry import get_services


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
