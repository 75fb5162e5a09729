"""Bearer-token protection (RFC 6750): @require_token guards any endpoint with our access tokens."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request

from idp.clock import utcnow
from idp.errors import InsufficientScope, InvalidAccessToken, MissingAccessToken
from idp.services.access_tokens import AccessToken
from idp.services.registry import get_services

F = TypeVar("F", bound=Callable[..., Any])


def bearer_token() -> str | None:
    """Return the token of an `Authorization: Bearer` header, None when there is no header."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise InvalidAccessToken()
    return token


def verify_request_token(
    token: str | None, scope: str | None, user_required: bool, client_id: str | None = None
) -> AccessToken:
    """Verify a presented token for the current request and keep it in `g.access_token`.

    With `client_id`, only a token issued to that client will do.
    """
    if token is None:
        raise MissingAccessToken()
    verified = get_services().access_tokens.verify(token, utcnow())
    if user_required and verified.user is None:
        raise InvalidAccessToken("This endpoint needs a user's access token.")
    if client_id is not None and verified.claims["client_id"] != client_id:
        # Another app's token for the same user is not a key to the user's account.
        raise InvalidAccessToken("This endpoint takes the API's own access tokens.")
    if scope and not set(scope.split()) <= verified.scopes:
        raise InsufficientScope(scope)
    g.access_token = verified
    return verified


def require_token(
    scope: str | None = None, *, user_required: bool = True, own_client: bool = False
) -> Callable[[F], F]:
    """Refuse the request unless it carries a live access token granting `scope`.

    `own_client`: only a token of the API's own client (IDP_API_CLIENT_ID) will do. The verified
    token is in `g.access_token` (its user in `g.access_token.user`).
    """

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            client_id = get_services().settings.api_client_id if own_client else None
            verify_request_token(bearer_token(), scope, user_required, client_id)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator
