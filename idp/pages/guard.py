"""Cross-site request checks for the hosted pages' forms, on top of Flask-WTF's CSRF token."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, request

from idp.errors import IdPError


class CrossSiteRequest(IdPError):
    code = "cross_site_request"
    status = 403
    message = "This form was sent from another site. Go back to the page and try again."


def refuse_cross_site_posts() -> None:
    """Refuse a POST whose Origin (or, without one, Referer) is not the issuer's own.

    Browsers send Origin with every form POST; a request that carries neither header did not
    come from our page in a browser. Sec-Fetch-Site, when present, must not say cross-site.
    """
    if request.method != "POST":
        return
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise CrossSiteRequest()
    own = _origin(current_app.config["IDP"].issuer)
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        referer = request.headers.get("Referer")
        origin = _origin(referer) if referer else None
    if origin is None or origin != own:
        raise CrossSiteRequest()


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    suffix = f":{port}" if port is not None and port != default else ""
    return f"{parts.scheme}://{host}{suffix}"
