"""RFC 7009 revocation and RFC 7662 introspection over our tokens."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint

from idp.clock import utcnow
from idp.errors import InvalidAccessToken
from idp.extensions import db
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


class RevocationEndpoint(_RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> PresentedToken | None:
        if not token_string or len(token_string) > MAX_PRESENTED_TOKEN:
            return None
        if not _looks_like_jwt(token_string):
            return _find_refresh(token_string)
        try:
            claims = get_services().access_tokens.decode(token_string, utcnow())
        except InvalidAccessToken:
            return None  # RFC 7009 2.2: an invalid token needs no revocation
        return PresentedToken(claims=claims)

    def revoke_token(self, token: PresentedToken, request: Any) -> None:
        services = get_services()
        now = utcnow()
        if token.claims is not None:
            services.sessions.deny_access_token(token.claims, now)
            db.session.commit()
        else:
            assert token.refresh is not None
            # Revoking a refresh token ends its whole session, access tokens included.
            services.sessions.revoke_session(token.refresh.session, REVOKED_BY_CLIENT, now)


class IntrospectionEndpoint(_IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> PresentedToken | None:
        if not token_string or len(token_string) > MAX_PRESENTED_TOKEN:
            return None
        if not _looks_like_jwt(token_string):
            return _find_refresh(token_string)
        try:
            verified = get_services().access_tokens.verify(token_string, utcnow())
        except InvalidAccessToken:
            return None
        return PresentedToken(claims=verified.claims)

    def check_permission(self, token: PresentedToken, client: Client, request: Any) -> bool:
        # Any confidential client may introspect: that is what a resource server is.
        return client.is_confidential

    def introspect_token(self, token: PresentedToken) -> dict[str, Any]:
        return token.introspection(get_services().settings["IDP_ISSUER"])
