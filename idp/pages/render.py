"""Rendering a hosted page: the product's name and colours, and the error page."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, make_response, render_template

from idp.errors import IdPError


def render_page(template: str, status: int = 200, **context: Any) -> Response:
    """Render templates/pages/<template> with the product's name."""
    settings = current_app.config["IDP"]
    html = render_template(f"pages/{template}", product_name=settings.product_name, **context)
    response = make_response(html, status)
    response.mimetype = "text/html"
    # Not no-referrer, which makes a browser send `Origin: null` with this page's forms; the
    # origin check (idp.pages.guard) needs the real one. Other sites still learn nothing.
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def error_page(message: str, status: int = 400) -> Response:
    """The page shown when nothing can be sent back to the application."""
    return render_page("error.html", status, message=message, code=status)


def render_error(error: IdPError) -> Response:
    """The pages surface's errors: a page, with the status and headers the error carries."""
    response = error_page(error.message, error.status)
    response.headers.update(error.headers)  # Retry-After of a 429, WWW-Authenticate
    return response


def see_other(location: str) -> Response:
    """A 303 to `location` with no body (a browser follows it with a GET)."""
    return Response(status=303, headers={"Location": location})
