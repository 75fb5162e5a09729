"""Authlib's view of our clients: the admin-registered ones and the built-in API client."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin

from idp.services import clients as client_service

CONFIDENTIAL_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class Client(ClientMixin):
    """A client as Authlib needs it. Confidential clients wrap a row; the API client is public."""

    def __init__(
        self, client_id: str, grant_types: set[str], scope: str, row: Any | None = None
    ) -> None:
        self.client_id = client_id
        self.grant_types = grant_types
        self.scope = scope
        self.row = row

    @classmethod
    def from_row(cls, row: Any) -> Client:
        return cls(row.client_id, set(row.grant_types.split()), row.scope, row)

    @property
    def is_confidential(self) -> bool:
        return self.row is not None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = self.scope.split()
        if not scope:
            return " ".join(allowed)
        return " ".join(item for item in dict.fromkeys(scope.split()) if item in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False  # no redirect-based grants

    def check_client_secret(self, client_secret: str) -> bool:
        return client_service.check_client_secret(self.client_id, self.row, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.is_confidential:
            return method in CONFIDENTIAL_AUTH_METHODS
        # The public API client proves nothing about itself; it may only refresh and revoke
        # tokens it holds, which is what RFC 6749 and RFC 7009 allow a public client.
        return method == "none" and endpoint in ("token", "revocation")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types
