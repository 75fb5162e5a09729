"""Authlib's view of our clients: the admin-registered ones and the built-in API client."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin
from flask import g

from idp.services import clients as client_service

CONFIDENTIAL_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class Client(ClientMixin):
    """A client as Authlib needs it: a registered row, or the built-in public API client."""

    def __init__(
        self,
        client_id: str,
        grant_types: set[str],
        scope: str,
        row: Any | None = None,
        *,
        is_public: bool = True,
        name: str = "",
        redirect_uris: tuple[str, ...] = (),
        post_logout_redirect_uris: tuple[str, ...] = (),
        first_party: bool = False,
        audiences: tuple[str, ...] = (),
        can_introspect: bool = False,
    ) -> None:
        self.client_id = client_id
        self.grant_types = grant_types
        self.scope = scope
        self.row = row
        self.is_public = is_public
        self.name = name
        self.redirect_uris = redirect_uris
        self.post_logout_redirect_uris = post_logout_redirect_uris
        self.first_party = first_party
        # Empty: the server's own audience (IDP_AUDIENCE).
        self.audiences = audiences
        self.can_introspect = can_introspect

    @classmethod
    def from_row(cls, row: Any) -> Client:
        return cls(
            row.client_id,
            set(row.grant_types.split()),
            row.scope,
            row,
            is_public=row.is_public,
            name=row.name,
            redirect_uris=tuple(row.redirect_uris.split()),
            post_logout_redirect_uris=tuple(row.post_logout_redirect_uris.split()),
            first_party=row.first_party,
            audiences=tuple(row.audiences.split()),
            can_introspect=row.can_introspect,
        )

    @property
    def is_confidential(self) -> bool:
        return not self.is_public

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        # Never guessed: an authorization request names its redirect_uri (OpenID Connect
        # requires it), and it must be one of the registered ones, exactly.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = self.scope.split()
        if not scope:
            return " ".join(allowed)
        return " ".join(item for item in dict.fromkeys(scope.split()) if item in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string comparison (RFC 9700 4.1.3): no prefix, wildcard or case folding.
        return isinstance(redirect_uri, str) and redirect_uri in self.redirect_uris

    def check_post_logout_redirect_uri(self, uri: str) -> bool:
        return isinstance(uri, str) and uri in self.post_logout_redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        matched = client_service.check_client_secret(self.client_id, self.row, client_secret)
        if not matched:
            g.client_auth_failure_recorded = True  # the service wrote its audit line
        return matched

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.is_confidential:
            return method in CONFIDENTIAL_AUTH_METHODS
        # A public client proves nothing about itself; it may only redeem codes (bound to its
        # PKCE verifier), refresh and revoke tokens it holds (RFC 6749, RFC 7009).
        return method == "none" and endpoint in ("token", "revocation")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types
