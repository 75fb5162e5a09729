"""Authlib's view of our clients: the admin-registered ones and the built-in API client."""

from __future__ import annotations

import re
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin
from flask import g

from idp.services import clients as client_service

CONFIDENTIAL_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
# A native app's loopback redirect URI (RFC 8252 7.3): http, one of the two loopback IP
# literals the RFC names (never the name "localhost", 8.3), an optional port, then nothing or a
# path or query. The groups: the URI before the port, the port, the rest.
_LOOPBACK_REDIRECT = re.compile(
    r"(http://(?:127\.0\.0\.1|\[::1\]))(?::([1-9][0-9]{0,4}))?([/?].*)?"
)
_PORT_MAX = 65535


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
        # requires it), and it must be one of the registered ones (check_redirect_uri).
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = self.scope.split()
        if not scope:
            return " ".join(allowed)
        return " ".join(item for item in dict.fromkeys(scope.split()) if item in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string comparison (RFC 9700 4.1.3): no prefix, wildcard or case folding. The
        # one exception is the port of a loopback redirect URI (RFC 8252 7.3, RFC 9700 2.1).
        if not isinstance(redirect_uri, str):
            return False
        return redirect_uri in self.redirect_uris or any(
            loopback_redirect_matches(registered, redirect_uri) for registered in self.redirect_uris
        )

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


def loopback_redirect_matches(registered: str, requested: str) -> bool:
    """Say whether `requested` is the loopback redirect URI `registered` on any port.

    RFC 8252 7.3: a native app listening on loopback learns its port from the operating system
    only when it makes the request, so the port is the one part that may differ; the scheme,
    host, path and query are compared as strings, with no decoding or case folding.
    """
    mine = _loopback_parts(registered)
    return mine is not None and mine == _loopback_parts(requested)


def _loopback_parts(uri: Any) -> tuple[str, str] | None:
    """A loopback redirect URI without its port: (scheme and host, the rest); else None."""
    found = _LOOPBACK_REDIRECT.fullmatch(uri) if isinstance(uri, str) else None
    if found is None:
        return None
    base, port, rest = found.group(1), found.group(2), found.group(3) or ""
    if port is not None and int(port) > _PORT_MAX:
        return None
    # Printable ASCII without a space, fragment or backslash (which browsers read as "/"): what
    # follows the port is the registered string itself, and nothing a parser could read as
    # more authority.
    if not all("!" <= ch <= "~" and ch not in "#\\" for ch in rest):
        return None
    return base, rest
