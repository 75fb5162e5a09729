"""RFC 7009 revocation and RFC 7662 introspection over our tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749 import UnsupportedTokenTypeError as _UnsupportedTokenTypeError
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint

from idp import audit
from idp.clock import utcnow
from idp.errors import InvalidAccessToken
from idp.oauth2.clients import Client
from idp.oauth2.tokens import PresentedToken
from idp.services.registry import get_services
from idp.services.sessions import REVOKED_BY_CLIENT

MAX_PRESENTED_TOKEN = 4096


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def _find_refresh(token: str) -> PresentedToken | None:
    row = get_services().sessions.find_by_refresh_token(token)
    return PresentedToken(refresh=row) if row is not None else None


def _presented(
    token_string: str, read_claims: Callable[[str], dict[str, Any]]
) -> PresentedToken | None:
    """Find a presented token: a JWT through read_claims, anything else as a refresh token."""
    if not token_string or len(token_string) > MAX_PRESENTED_TOKEN:
        return None
    if not _looks_like_jwt(token_string):
        return _find_refresh(token_string)
    try:
        return PresentedToken(claims=read_claims(token_string))
    except InvalidAccessToken:
        return None


class UnsupportedTokenTypeError(_UnsupportedTokenTypeError):
    """An unknown token_type_hint: 400 as RFC 6749 5.2 asks (Authlib answers 401, which tells a
    client that did authenticate that its credentials failed)."""

    status_code = 400


class _TokenTypeHint:
    """Refuse an unknown token_type_hint with a 400 before Authlib's own check can say 401."""

    SUPPORTED_TOKEN_TYPES: tuple[str, ...]

    def check_params(self, request: Any, client: Client) -> None:
        hint = request.form.get("token_type_hint")
        if hint and hint not in self.SUPPORTED_TOKEN_TYPES:
            raise UnsupportedTokenTypeError()
        super().check_params(request, client)  # type: ignore[misc]


class RevocationEndpoint(_TokenTypeHint, _RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> PresentedToken | None:
        # Signature and claims only: a revoked token may be revoked again (RFC 7009 2.2: an
        # invalid one needs no revocation and is answered 200 all the same).
        return _presented(
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


class IntrospectionEndpoint(_TokenTypeHint, _IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> PresentedToken | None:
        # Full verification: revoked, logged-out and orphaned tokens are simply not active.
        return _presented(
            token_string, lambda raw: get_services().access_tokens.verify(raw, utcnow()).claims
        )

    def check_permission(self, token: PresentedToken, client: Client, request: Any) -> bool:
        # Any confidential client may introspect access tokens: that is what a resource server
        # is. A refresh token is shown only to the client it was issued to (RFC 7662 section 4).
        if not client.is_confidential:
            return False
        return token.refresh is None or token.check_client(client)

    def introspect_token(self, token: PresentedToken) -> dict[str, Any]:
        return token.introspection(get_services().settings["IDP_ISSUER"])
