"""The authorization server: one Authlib server per application with our grants and endpoints."""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidClientError
from flask import Flask, current_app, g

from idp.oauth.authorization_code import AuthorizationCodeGrant, IDToken, S256CodeChallenge
from idp.oauth.client_auth import (
    authenticate_basic,
    authenticate_post,
    authenticate_public,
    presented_client_id,
)
from idp.oauth.client_credentials import ClientCredentialsGrant
from idp.oauth.clients import Client
from idp.oauth.introspection import IntrospectionEndpoint
from idp.oauth.refresh_token import RefreshTokenGrant
from idp.oauth.revocation import RevocationEndpoint
from idp.services import clients as client_service
from idp.services.registry import get_services
from idp.services.sessions import API_SCOPE

EXTENSION_KEY = "idp.authorization_server"


def api_client(client_id: str) -> Client:
    """The built-in public client that /api/v1/auth issues its sessions to."""
    return Client(client_id, {"refresh_token"}, API_SCOPE)


def query_client(client_id: str) -> Client | None:
    if client_id == get_services().settings.api_client_id:
        return api_client(client_id)
    row = get_services().clients.find(client_id)
    return Client.from_row(row) if row is not None else None


def save_token(token: dict[str, Any], request: Any) -> None:
    """Nothing to store: access tokens are self-contained, refresh tokens are stored on rotation."""


class Server(AuthorizationServer):
    """Authlib's Flask server, which also takes a request we built (a resumed authorization),
    and audits every failed client authentication."""

    def authenticate_client(self, request: Any, methods: Any, endpoint: str = "token") -> Any:
        try:
            return super().authenticate_client(request, methods, endpoint)
        except InvalidClientError:
            # A wrong secret and an unknown client_id were audited where they were found;
            # what is left is a method the client may not use, or no credentials at all.
            if not g.get("client_auth_failure_recorded"):
                client_id = presented_client_id(request)
                reason = "wrong_method" if client_id else "missing_credentials"
                client_service.record_auth_failure(client_id, reason)
            raise

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        # Authlib's Flask server always reads flask.request, whatever it is handed; an
        # authorization request that comes back from the sign-in page is no longer there.
        if isinstance(request, OAuth2Request):
            return request
        return super().create_oauth2_request(request)


def config_oauth(app: Flask) -> AuthorizationServer:
    """Create the application's authorization server with our grants and endpoints."""
    server = Server()
    server.init_app(app, query_client=query_client, save_token=save_token)
    server.register_client_auth_method("client_secret_basic", authenticate_basic)
    server.register_client_auth_method("client_secret_post", authenticate_post)
    server.register_client_auth_method("none", authenticate_public)
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True), IDToken()])
    server.register_grant(RefreshTokenGrant)
    server.register_endpoint(RevocationEndpoint)
    server.register_endpoint(IntrospectionEndpoint)
    app.extensions[EXTENSION_KEY] = server
    return server


def authorization_server() -> AuthorizationServer:
    """Return the current application's authorization server."""
    return current_app.extensions[EXTENSION_KEY]
