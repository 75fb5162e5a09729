"""RFC 7009 token revocation: an access token is denylisted, a refresh token ends its session."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint

from idp.clock import utcnow
from idp.oauth.presented import PresentedToken, TokenTypeHint, presented
from idp.services.registry import get_services


class RevocationEndpoint(TokenTypeHint, _RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> PresentedToken | None:
        # Signature and claims only: a revoked token may be revoked again (RFC 7009 2.2: an
        # invalid one needs no revocation and is answered 200 all the same). Any audience: a
        # client revokes its own tokens whichever resource server they were for.
        return presented(
            token_string,
            lambda raw: get_services().access_tokens.decode(raw, utcnow(), any_audience=True),
        )

    def revoke_token(self, token: PresentedToken, request: Any) -> None:
        sessions = get_services().sessions
        if token.claims is not None:
            sessions.revoke_access_token(token.claims, utcnow())
        else:
            assert token.refresh is not None
            # Revoking a refresh token ends its whole session, access tokens included.
            sessions.revoke_refresh_session(token.refresh.session, utcnow())
