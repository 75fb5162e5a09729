"""Audiences (RFC 8707 resource indicators): which resource servers a token is for.

A client is registered with the audiences its tokens may name (none: this server's own,
IDP_AUDIENCE). A `resource` parameter narrows a token to one of them; naming any other is
`invalid_target`. One resource per request: parameters may not repeat here.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import OAuth2Error

from idp.services.registry import get_services


class InvalidTargetError(OAuth2Error):
    """RFC 8707 2: the resource is unknown, or not one this client's tokens may be for."""

    error = "invalid_target"
    status_code = 400


def registered_audiences(client: Any) -> tuple[str, ...]:
    """The audiences a client's tokens may carry."""
    return client.audiences or (get_services().settings.audience,)


def token_audience(client: Any, resource: str | None) -> str | list[str]:
    """The `aud` of a token for `client`: the resource asked for, or every registered one."""
    registered = registered_audiences(client)
    if resource is not None:
        if resource not in registered:
            raise InvalidTargetError("The resource is not one this client's tokens are for.")
        return resource
    return registered[0] if len(registered) == 1 else list(registered)
