"""OAuth clients: registration by an admin, lookup and secret checks."""

from __future__ import annotations

import ipaddress
import secrets
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import bindparam, select

from idp import audit
from idp.database import read_one
from idp.extensions import db
from idp.models import OAuthClient, RefreshSession
from idp.services.secret_tokens import digest, digest_matches, new_secret
from idp.transaction import after_commit

if TYPE_CHECKING:
    from idp.services.sessions import SessionService

# Why the sessions of a deleted client ended (RefreshSession.revoked_reason).
CLIENT_DELETED = "client_deleted"

CONFIDENTIAL_GRANTS = frozenset({"client_credentials"})
# What a client that signs users in (public or confidential) may use.
REDIRECT_GRANTS = frozenset({"authorization_code", "refresh_token"})
# The kinds of client an admin registers.
SERVICE = "service"  # confidential, client_credentials only (the default, as before)
CONFIDENTIAL = "confidential"  # a server-side web app: a secret and redirect URIs
PUBLIC = "public"  # a browser or native app: no secret, PKCE required
KINDS = (SERVICE, CONFIDENTIAL, PUBLIC)
URI_MAX = 2000
_LOOPBACK = {"localhost"}
NAME_MAX = 200  # the columns' lengths (PostgreSQL refuses longer values)
SCOPE_MAX = 500
SCOPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:._-/")


class ClientCommandError(Exception):
    """An admin asked for a client that cannot exist."""


@dataclass(frozen=True)
class CreatedClient:
    client: OAuthClient
    client_secret: str  # shown once, never stored


def create_client(
    name: str,
    scope: str,
    now: datetime,
    *,
    kind: str = SERVICE,
    redirect_uris: Sequence[str] = (),
    post_logout_redirect_uris: Sequence[str] = (),
    first_party: bool = False,
    allow_http_redirects: bool = False,
    audiences: Sequence[str] = (),
    introspect: bool = False,
) -> CreatedClient:
    """Register a client; return its secret once (a public client has none).

    `audiences` are the resource servers its tokens are for (none: the server's own);
    `introspect` lets a confidential client introspect tokens meant for its audiences.
    """
    scopes = scope.split()
    if kind not in KINDS:
        raise ClientCommandError(f"a client is one of {', '.join(KINDS)}")
    if kind == SERVICE and (redirect_uris or post_logout_redirect_uris):
        raise ClientCommandError("a client with redirect URIs is --public or --confidential")
    if kind != SERVICE and not redirect_uris:
        raise ClientCommandError("a client that signs users in needs at least one --redirect-uri")
    redirects = _checked_uris(redirect_uris, allow_http_redirects)
    post_logout = _checked_uris(post_logout_redirect_uris, allow_http_redirects)
    resources = [_checked_audience(audience) for audience in dict.fromkeys(audiences)]
    if introspect and kind == PUBLIC:
        raise ClientCommandError("a public client cannot authenticate, so cannot introspect")
    if introspect and not resources:
        # Without one it would see every token of the default audience, every app's included.
        raise ClientCommandError(
            "a resource server names the audience it serves (--audience URI; the issuer for "
            "tokens meant for idp itself)"
        )
    if not name.strip():
        raise ClientCommandError("a client needs a name")
    # The name is printed by `clients list`: a newline, escape sequence or bidi override in it
    # could forge lines or recolour an admin's terminal.
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        raise ClientCommandError("a client name must not contain control characters")
    if len(name.strip()) > NAME_MAX or len(" ".join(dict.fromkeys(scopes))) > SCOPE_MAX:
        raise ClientCommandError(
            f"a client name has at most {NAME_MAX} characters, its scope {SCOPE_MAX}"
        )
    for item in scopes:
        if not set(item) <= SCOPE_CHARS:
            raise ClientCommandError(f"invalid scope {item!r}")
    secret = new_secret() if kind != PUBLIC else ""
    client = OAuthClient(
        # Hex, not base64url: an id starting with "-" would read as an option on a command line.
        client_id=secrets.token_hex(16),
        client_secret_hash=digest(secret) if secret else None,
        name=name.strip(),
        grant_types=" ".join(sorted(CONFIDENTIAL_GRANTS if kind == SERVICE else REDIRECT_GRANTS)),
        scope=" ".join(dict.fromkeys(scopes)),
        is_public=kind == PUBLIC,
        first_party=first_party,
        redirect_uris=" ".join(redirects),
        post_logout_redirect_uris=" ".join(post_logout),
        audiences=" ".join(resources),
        can_introspect=introspect,
        created_at=now,
    )
    db.session.add(client)
    db.session.flush()
    after_commit(
        audit.record, "client.created", "success", client_id=client.client_id, scope=client.scope
    )
    return CreatedClient(client, secret)


def _checked_uris(uris: Sequence[str], allow_http: bool) -> list[str]:
    """Refuse a redirect URI that is not absolute, carries a fragment, or is plain http.

    http is for a loopback host only (RFC 8252 7.3), unless IDP_ALLOW_HTTP_REDIRECTS says this
    is a development server. A private-use scheme (RFC 8252 7.1) must be a reverse domain name
    ("com.example.app:/cb"), which rules out javascript:, data: and the like.
    """
    checked: list[str] = []
    for uri in uris:
        if not uri or len(uri) > URI_MAX or any(ch.isspace() or ord(ch) < 32 for ch in uri):
            raise ClientCommandError(f"invalid redirect URI {uri!r}")
        try:
            parts = urlsplit(uri)
            host = parts.hostname
        except ValueError as exc:
            raise ClientCommandError(f"invalid redirect URI {uri!r}") from exc
        if parts.fragment or "#" in uri:
            raise ClientCommandError(f"a redirect URI has no fragment: {uri!r}")
        if parts.username is not None or parts.password is not None:
            raise ClientCommandError(f"a redirect URI carries no credentials: {uri!r}")
        scheme = parts.scheme.lower()
        if scheme == "https":
            if not host:
                raise ClientCommandError(f"a redirect URI names a host: {uri!r}")
        elif scheme == "http":
            if not host or not (allow_http or _is_loopback(host)):
                raise ClientCommandError(
                    f"plain http only for a loopback host (or IDP_ALLOW_HTTP_REDIRECTS): {uri!r}"
                )
        elif "." not in scheme or not scheme.replace(".", "").replace("-", "").isalnum():
            raise ClientCommandError(
                f"a redirect URI is https, loopback http, or a reverse-domain scheme: {uri!r}"
            )
        if uri not in checked:
            checked.append(uri)
    return checked


def _checked_audience(audience: str) -> str:
    """A resource indicator (RFC 8707 2): an absolute URI without a fragment."""
    try:
        parts = urlsplit(audience)
    except ValueError as exc:
        raise ClientCommandError(f"invalid audience {audience!r}") from exc
    printable = all(" " < ch <= "~" for ch in audience)
    if not printable or len(audience) > URI_MAX or not parts.scheme or "#" in audience:
        raise ClientCommandError(f"an audience is an absolute URI without a fragment: {audience!r}")
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise ClientCommandError(f"an audience names a host: {audience!r}")
    return audience


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def list_clients() -> list[OAuthClient]:
    """Return every client that is not deleted, oldest first."""
    return list(
        db.session.scalars(
            select(OAuthClient).where(OAuthClient.deleted_at.is_(None)).order_by(OAuthClient.id)
        )
    )


def find_client(client_id: str) -> Any | None:
    """Return a live client's id, secret digest, grant types and scope (a read-only row)."""
    if not _plausible_id(client_id):
        return None
    return read_one(_LIVE_CLIENT, {"client_id": client_id})


class RecentClients:
    """A per-process memory of clients found in the last few seconds, for client authentication.

    Client authentication runs on every /oauth request, and a database round trip costs more
    than the rest of the check. A deleted client can go on authenticating for at most `ttl`
    seconds in processes that saw it just before; any token it gets in that window is refused
    at once by verification and introspection, which read the client from the database on
    every request. Unknown ids are never remembered, so guessing cannot fill the memory.
    """

    MAX_ENTRIES = 1024

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._rows: dict[str, tuple[float, Any]] = {}

    def find(self, client_id: str) -> Any | None:
        """Return the live client, from memory if it was read less than `ttl` seconds ago."""
        now = time.monotonic()
        remembered = self._rows.get(client_id) if isinstance(client_id, str) else None
        if remembered is not None and remembered[0] > now:
            return remembered[1]
        row = find_client(client_id)
        if row is None:
            self._rows.pop(client_id, None)
        elif self.ttl > 0:
            if len(self._rows) >= self.MAX_ENTRIES:
                self._rows.clear()
            self._rows[client_id] = (now + self.ttl, row)
        return row

    def forget(self, client_id: str) -> None:
        """Drop a client at once (this process deleted it)."""
        self._rows.pop(client_id, None)


def _plausible_id(client_id: Any) -> bool:
    # PostgreSQL refuses NUL in text parameters (an error, not "no row"): no client has one.
    return isinstance(client_id, str) and len(client_id) <= 64 and "\x00" not in client_id


_clients = OAuthClient.__table__
_LIVE_CLIENT = select(
    _clients.c.client_id,
    _clients.c.client_secret_hash,
    _clients.c.grant_types,
    _clients.c.scope,
    _clients.c.name,
    _clients.c.is_public,
    _clients.c.first_party,
    _clients.c.redirect_uris,
    _clients.c.post_logout_redirect_uris,
    _clients.c.audiences,
    _clients.c.can_introspect,
).where(_clients.c.client_id == bindparam("client_id"), _clients.c.deleted_at.is_(None))


def check_client_secret(client_id: str, client: Any | None, secret: str) -> bool:
    """Compare a presented secret with the stored digest in constant time; audit a mismatch."""
    matched = (
        client is not None
        and client.client_secret_hash is not None
        and isinstance(secret, str)
        and digest_matches(secret, client.client_secret_hash)
    )
    if not matched:
        audit.record("client.auth_failure", "failure", client_id=client_id, reason="bad_secret")
    return matched


def record_auth_failure(client_id: Any, reason: str) -> None:
    """Audit a failed client authentication that no secret check saw (unknown client, a method
    the client may not use, no credentials); the presented id is cut to a column's length."""
    shown = client_id[:64] if isinstance(client_id, str) and client_id else None
    audit.record("client.auth_failure", "failure", client_id=shown, reason=reason)


def delete_client(client_id: str, now: datetime, sessions: SessionService) -> None:
    """Mark a client deleted: it can no longer authenticate and its tokens stop verifying.

    Its own tokens (client_credentials) name no session and are checked against the client's
    row; its users' tokens name their session, so those sessions end here, with the refresh
    tokens, and the access tokens that name them are refused from the next request on.
    """
    client = find_client_for_admin(client_id)
    client.deleted_at = now
    sessions.revoke_matching(CLIENT_DELETED, now, RefreshSession.client_id == client_id)
    db.session.flush()
    after_commit(audit.record, "client.deleted", "success", client_id=client_id)


def find_client_for_admin(client_id: str) -> OAuthClient:
    """Return a live client by id for the admin commands, or raise ClientCommandError."""
    client = None
    if _plausible_id(client_id):
        client = db.session.scalar(
            select(OAuthClient).where(
                OAuthClient.client_id == client_id, OAuthClient.deleted_at.is_(None)
            )
        )
    if client is None:
        raise ClientCommandError(f"no client with id {client_id}")
    return client


def rotate_secret(client_id: str, now: datetime) -> str:
    """Give a confidential client a new secret; the old one stops working at once."""
    client = find_client_for_admin(client_id)
    if client.is_public:
        raise ClientCommandError("a public client has no secret")
    secret = new_secret()
    client.client_secret_hash = digest(secret)
    db.session.flush()
    after_commit(audit.record, "client.secret_rotated", "success", client_id=client_id)
    return secret
