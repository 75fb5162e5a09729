"""RFC 7009 token revocation: an access token is denylisted, a refresh token ends its session."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint

from idp import audit
from idp.clock import utcnow
from idp.oauth.presented import PresentedToken, TokenTypeHint, presented
from idp.services.registry import get_services
from idp.services.sessions import REVOKED_BY_CLIENT


class RevocationEndpoint(TokenTypeHint, _RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> PresentedToken | None:
        # Signature and claims only: a revoked token may be revoked again (RFC 7009 2.2: an
        # invalid one needs no revocation and is answered 200 all the same).
        return presented(
            token_string, lambda raw: get_services().access_tokens.decode(raw, utcnow())
        )

    def revoke_token(self, token: PresentedToken, request: Any) -> None:
        services = get_services()
        now = utcnow()
        if token.claims is not None:
            claims = token.claims
            services.sessions.revoke_access_token(claims, now)
            audit.record(
                "token.revoked",
                "success",
                # A user's token names its session; a client's token has no user.
                user_id=claims["sub"] if "sid" in claims else None,
                kind="access",
                client_id=claims["client_id"],
                session_id=claims.get("sid"),
                jti=claims["jti"],
            )
        else:
            assert token.refresh is not None
            session = token.refresh.session
            # Read before the commit, which expires the rows.
            user_id, session_id, client_id = (
                session.user.public_id,
                session.public_id,
                session.client_id,
            )
            # Revoking a refresh token ends its whole session, access tokens included.
            services.sessions.revoke_session(session, REVOKED_BY_CLIENT, now)
            audit.record(
                "token.revoked",
                "success",
                user_id=user_id,
                kind="refresh",
                client_id=client_id,
                session_id=session_id,
            )
