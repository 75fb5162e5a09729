"""RFC 7662 token introspection: is this token active, and what does it say?"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint

from idp.clock import utcnow
from idp.oauth.clients import Client
from idp.oauth.presented import PresentedToken, TokenTypeHint, presented
from idp.services.registry import get_services


class IntrospectionEndpoint(TokenTypeHint, _IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> PresentedToken | None:
        # Full verification: revoked, logged-out and orphaned tokens are simply not active.
        return presented(
            token_string, lambda raw: get_services().access_tokens.verify(raw, utcnow()).claims
        )

    def check_permission(self, token: PresentedToken, client: Client, request: Any) -> bool:
        # Any confidential client may introspect access tokens: that is what a resource server
        # is. A refresh token is shown only to the client it was issued to (RFC 7662 section 4).
        if not client.is_confidential:
            return False
        return token.refresh is None or token.check_client(client)

    def introspect_token(self, token: PresentedToken) -> dict[str, Any]:
        return token.introspection(get_services().settings.issuer)
