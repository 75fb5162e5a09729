"""The browser-session cookie of the hosted pages and /oauth/authorize|logout.

HttpOnly, SameSite=Lax, Path=/; with an https issuer also Secure and the `__Host-` prefix,
which a browser accepts only from a secure origin without a Domain attribute, so no sibling
subdomain can set or overwrite it. The API never reads it: it stays bearer-only.
"""

from __future__ import annotations

from flask import Response, current_app, request

NAME = "idp_session"


def cookie_name() -> str:
    """The cookie's name: `__Host-idp_session` when the issuer is https."""
    return f"__Host-{NAME}" if _secure() else NAME


def read_session_cookie() -> str | None:
    """Return the browser-session cookie's value, if the request carries one."""
    return request.cookies.get(cookie_name())


def set_session_cookie(response: Response, value: str, max_age: int) -> None:
    """Hand the browser a new session cookie (a new value at every sign-in)."""
    response.set_cookie(
        cookie_name(),
        value,
        max_age=max_age,
        path="/",
        secure=_secure(),
        httponly=True,
        samesite="Lax",
    )


def clear_session_cookie(response: Response) -> None:
    """Tell the browser to forget its session cookie."""
    response.delete_cookie(cookie_name(), path="/", secure=_secure(), httponly=True, samesite="Lax")


def _secure() -> bool:
    return current_app.config["IDP"].issuer.startswith("https://")
