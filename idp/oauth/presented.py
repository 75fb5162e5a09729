"""A token presented to revocation or introspection, whichever kind it turns out to be.

Both endpoints take an access token (a JWT) or a refresh token (an opaque string) in one
parameter; `presented()` tells them apart and finds the token, and TokenTypeHint refuses a
hint neither endpoint knows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from authlib.oauth2.rfc6749 import UnsupportedTokenTypeError as _UnsupportedTokenTypeError

from idp.clock import utcnow
from idp.errors import InvalidAccessToken
from idp.models import RefreshToken
from idp.oauth.clients import Client
from idp.services.registry import get_services

MAX_PRESENTED_TOKEN = 4096


class PresentedToken:
    """An access token's verified claims, or a stored refresh-token row."""

    def __init__(
        self,
        *,
        claims: dict[str, Any] | None = None,
        refresh: RefreshToken | None = None,
        active: bool = True,
    ) -> None:
        self.claims = claims
        self.refresh = refresh
        self.active = active

    @property
    def client_id(self) -> str:
        if self.claims is not None:
            return self.claims["client_id"]
        assert self.refresh is not None
        return self.refresh.session.client_id

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.get_client_id()

    def is_expired(self) -> bool:
        if self.refresh is not None:
            return self.refresh.expires_at <= utcnow()
        return False  # expiry was checked when the claims were verified

    def is_revoked(self) -> bool:
        if not self.active:
            return True
        if self.refresh is not None:
            return self.refresh.used_at is not None or self.refresh.session.revoked_at is not None
        return False

    def introspection(self, issuer: str) -> dict[str, Any]:
        if self.claims is not None:
            fields = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti", "sid")
            body = {name: self.claims[name] for name in fields if name in self.claims}
            body["token_type"] = "Bearer"
            return body
        assert self.refresh is not None
        session = self.refresh.session
        return {
            "scope": session.scope,
            "client_id": session.client_id,
            "sub": session.user.public_id,
            "iss": issuer,
            "exp": _epoch(self.refresh.expires_at),
            "iat": _epoch(self.refresh.created_at),
            "sid": session.public_id,
            "token_type": "refresh_token",
        }


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def _find_refresh(token: str) -> PresentedToken | None:
    row = get_services().sessions.find_by_refresh_token(token)
    return PresentedToken(refresh=row) if row is not None else None


def presented(
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


class TokenTypeHint:
    """Refuse an unknown token_type_hint with a 400 before Authlib's own check can say 401."""

    SUPPORTED_TOKEN_TYPES: tuple[str, ...]

    def check_params(self, request: Any, client: Client) -> None:
        hint = request.form.get("token_type_hint")
        if hint and hint not in self.SUPPORTED_TOKEN_TYPES:
            raise UnsupportedTokenTypeError()
        super().check_params(request, client)  # type: ignore[misc]
