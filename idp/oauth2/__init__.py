"""Authlib wiring: one authorization server per application, set up by config_oauth(app)."""

from __future__ import annotations

import base64
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749.authenticate_client import (
    authenticate_client_secret_basic,
    authenticate_client_secret_post,
    authenticate_none,
)
from authlib.oauth2.rfc6749.errors import InvalidClientError
from flask import Flask, current_app

from idp.oauth2.clients import Client
from idp.oauth2.endpoints import IntrospectionEndpoint, RevocationEndpoint
from idp.oauth2.grants import ClientCredentialsGrant, RefreshTokenGrant, generate_client_token
from idp.services.registry import get_services
from idp.services.sessions import API_SCOPE

EXTENSION_KEY = "idp.authorization_server"


def api_client(client_id: str) -> Client:
    """The built-in public client that /api/v1/auth issues its sessions to."""
    return Client(client_id, {"refresh_token"}, API_SCOPE)


def query_client(client_id: str) -> Client | None:
    if client_id == get_services().settings["IDP_API_CLIENT_ID"]:
        return api_client(client_id)
    row = get_services().clients.find(client_id)
    return Client.from_row(row) if row is not None else None


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
        return None


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


def save_token(token: dict[str, Any], request: Any) -> None:
    """Nothing to store: access tokens are self-contained, refresh tokens are stored on rotation."""


def config_oauth(app: Flask) -> AuthorizationServer:
    """Create the application's authorization server with our grants and endpoints."""
    server = AuthorizationServer()
    server.init_app(app, query_client=query_client, save_token=save_token)
    server.register_client_auth_method("client_secret_basic", authenticate_basic)
    server.register_client_auth_method("client_secret_post", authenticate_post)
    server.register_client_auth_method("none", authenticate_public)
    server.register_token_generator("client_credentials", generate_client_token)
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(RefreshTokenGrant)
    server.register_endpoint(RevocationEndpoint)
    server.register_endpoint(IntrospectionEndpoint)
    app.extensions[EXTENSION_KEY] = server
    return server


def authorization_server() -> AuthorizationServer:
    """Return the current application's authorization server."""
    return current_app.extensions[EXTENSION_KEY]
