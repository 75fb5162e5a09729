"""The client_credentials grant (RFC 6749 4.4): a client's own access token, RFC 9068 shaped."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidScopeError

from idp.clock import utcnow
from idp.oauth.resource import token_audience
from idp.services.registry import get_services


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_requested_scope(self) -> None:
        requested = self.request.payload.scope
        if requested and not set(requested.split()) <= set(self.client.scope.split()):
            raise InvalidScopeError()

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Mint the client's own token (RFC 9068: sub is the client), for its audience."""
        client = self.client
        audience = token_audience(client, self.request.form.get("resource"))
        granted = client.get_allowed_scope(self.request.payload.scope)
        issued = get_services().access_tokens.issue_to_client(
            client.get_client_id(), granted, utcnow(), audience=audience
        )
        token = {
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": granted,
        }
        return 200, token, self.TOKEN_RESPONSE_HEADER
