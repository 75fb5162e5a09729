"""A token presented to revocation or introspection, whichever kind it turns out to be."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from idp.clock import utcnow
from idp.models import RefreshToken
from idp.oauth2.clients import Client


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
