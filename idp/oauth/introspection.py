"""RFC 7662 token introspection: is this token active, and what does it say?"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint

from idp.clock import utcnow
from idp.oauth.clients import Client
from idp.oauth.presented import PresentedToken, TokenTypeHint, presented
from idp.oauth.resource import registered_audiences
from idp.services.registry import get_services


class IntrospectionEndpoint(TokenTypeHint, _IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> PresentedToken | None:
        # Full verification: revoked, logged-out and orphaned tokens are simply not active.
        # Any audience: whether the asking resource server may see it is check_permission's.
        return presented(
            token_string,
            lambda raw: (
                get_services().access_tokens.verify(raw, utcnow(), any_audience=True).claims
            ),
        )

    def check_permission(self, token: PresentedToken, client: Client, request: Any) -> bool:
        # Only a resource server registered with --introspect, and only for tokens meant for
        # one of its audiences: a token issued for one app is not shown to another. A refresh
        # token is shown only to the client it was issued to (RFC 7662 section 4).
        if not client.is_confidential or not client.can_introspect:
            return False
        if token.refresh is not None:
            return token.check_client(client)
        assert token.claims is not None
        audience = token.claims["aud"]
        audiences = {audience} if isinstance(audience, str) else set(audience)
        return bool(audiences & set(registered_audiences(client)))

    def introspect_token(self, token: PresentedToken) -> dict[str, Any]:
        return token.introspection(get_services().settings.issuer)
