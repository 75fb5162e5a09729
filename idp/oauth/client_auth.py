"""Client authentication at the token, revocation and introspection endpoints (RFC 6749 2.3).

Authlib's three methods, wrapped so that an unknown client_id and a wrong secret get the same
401 invalid_client, and a malformed Basic header authenticates nobody instead of raising.
"""

from __future__ import annotations

import base64
from typing import Any

from authlib.oauth2.rfc6749.authenticate_client import (
    authenticate_client_secret_basic,
    authenticate_client_secret_post,
    authenticate_none,
)
from authlib.oauth2.rfc6749.errors import InvalidClientError
from flask import g

from idp.oauth.clients import Client
from idp.services import clients as client_service


def _unknown_is_unauthenticated(method: Any, query_client: Any, request: Any) -> Client | None:
    """Run an Authlib client authentication method; an unknown client_id authenticates nobody.

    Authlib answers an unknown client with its own message ("does not exist on this server"),
    and with client_secret_post a 400, where a known client with a wrong secret gets a 401 that
    names the methods: the difference tells an attacker which client_ids exist. Returning None
    leaves one answer for both (RFC 6749 5.2 invalid_client).
    """
    try:
        return method(query_client, request)
    except InvalidClientError:
        # Authlib raises it here only for a client_id that names no live client.
        client_service.record_auth_failure(presented_client_id(request), "unknown_client")
        g.client_auth_failure_recorded = True
        return None


def presented_client_id(request: Any) -> str | None:
    """The client_id a request names, in its Basic header or its form, if it names one."""
    parts = request.headers.get("Authorization", "").split(None, 1)
    if len(parts) == 2 and parts[0].lower() == "basic":
        try:
            return base64.b64decode(parts[1]).decode("utf-8").partition(":")[0] or None
        except ValueError:
            return None
    client_id = request.form.get("client_id")
    return client_id if isinstance(client_id, str) and client_id else None


def authenticate_basic(query_client: Any, request: Any) -> Client | None:
    """client_secret_basic, where credentials that are not base64 of UTF-8 authenticate nobody.

    Authlib lets the ValueError of such a header escape as a 500; here the client is simply not
    authenticated, and the endpoint answers 401 invalid_client.
    """
    # The same split and decoding as Authlib's extract_basic_authorization, done first.
    parts = request.headers.get("Authorization", "").split(None, 1)
    if len(parts) == 2 and parts[0].lower() == "basic":
        try:
            base64.b64decode(parts[1]).decode("utf-8")
        except ValueError:  # non-ASCII or malformed base64, or bytes that are not UTF-8
            return None
    return _unknown_is_unauthenticated(authenticate_client_secret_basic, query_client, request)


def authenticate_post(query_client: Any, request: Any) -> Client | None:
    """client_secret_post; an unknown client_id answers like a wrong secret."""
    return _unknown_is_unauthenticated(authenticate_client_secret_post, query_client, request)


def authenticate_public(query_client: Any, request: Any) -> Client | None:
    """none (the public API client); an unknown client_id answers like a wrong secret."""
    return _unknown_is_unauthenticated(authenticate_none, query_client, request)
