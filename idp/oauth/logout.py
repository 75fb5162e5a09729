"""RP-Initiated Logout 1.0: /oauth/logout, the end_session_endpoint.

A post_logout_redirect_uri is used only when it is registered, exactly, for the client named by
client_id or by the ID token hint's audience; anything else is shown on idp's own page. Without
a hint that names the current browser session the user is asked to confirm, so a link on
another site cannot sign anyone out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from authlib.common.urls import add_params_to_uri
from joserfc import jws
from joserfc.errors import JoseError

from idp.models import BrowserSession
from idp.oauth.server import query_client
from idp.services.keys import ALGORITHM
from idp.services.registry import get_services

HINT_MAX = 8192


class LogoutRequestError(Exception):
    """A logout request that cannot be honoured; its message is shown on idp's page."""


@dataclass(frozen=True)
class LogoutRequest:
    """A checked logout request."""

    redirect_uri: str | None  # registered, with state and nothing else added yet
    state: str | None
    hint_sid: str | None  # the browser session the ID token hint names

    def names(self, session: BrowserSession | None) -> bool:
        """Whether the hint proves the request comes from an app of this very session."""
        return session is not None and self.hint_sid == session.public_id

    def final_redirect(self) -> str | None:
        if self.redirect_uri is None:
            return None
        pairs = [("state", self.state)] if self.state else []
        return add_params_to_uri(self.redirect_uri, pairs) if pairs else self.redirect_uri


def check_logout_request(params: dict[str, str]) -> LogoutRequest:
    """Check the parameters of a logout request; raise LogoutRequestError when they are bad."""
    hint = _hint_claims(params.get("id_token_hint"))
    client_id = params.get("client_id")
    audience = hint.get("aud") if hint else None
    if hint is not None and client_id is not None and audience != client_id:
        raise LogoutRequestError("The ID token hint was not issued to this client_id.")
    client_id = client_id or (audience if isinstance(audience, str) else None)
    redirect_uri = params.get("post_logout_redirect_uri")
    if redirect_uri is not None:
        client = query_client(client_id) if client_id else None
        if client is None or not client.check_post_logout_redirect_uri(redirect_uri):
            raise LogoutRequestError(
                "The post_logout_redirect_uri is not registered for this application."
            )
    sid = hint.get("sid") if hint else None
    return LogoutRequest(redirect_uri, params.get("state"), sid if isinstance(sid, str) else None)


def _hint_claims(token: str | None) -> dict[str, Any] | None:
    """The hint's claims, None without a hint; a hint not issued here is LogoutRequestError."""
    if token is None:
        return None
    claims = id_token_hint_claims(token)
    if claims is None:
        raise LogoutRequestError("The id_token_hint is not an ID token issued here.")
    return claims


def id_token_hint_claims(token: str) -> dict[str, Any] | None:
    """The claims of an ID token we signed, or None for anything else (forged, foreign, an
    access token). It may have expired: a hint names a user or a session, it proves no login."""
    if len(token) > HINT_MAX:
        return None
    try:
        compact = jws.extract_compact(token.encode("ascii"))
        header = compact.headers()
        kid = header.get("kid")
        key = get_services().keys.verification_key(kid) if isinstance(kid, str) else None
        # An access token (typ at+jwt) is not an ID token, whoever signed it.
        access = str(header.get("typ", "")).lower() in ("at+jwt", "application/at+jwt")
        if header.get("alg") != ALGORITHM or key is None or access:
            return None
        if not jws.validate_compact(compact, key, algorithms=[ALGORITHM]):
            return None
        claims = json.loads(compact.payload)
    except (JoseError, ValueError, UnicodeError, RecursionError):
        return None
    if not isinstance(claims, dict) or claims.get("iss") != get_services().settings.issuer:
        return None
    return claims
