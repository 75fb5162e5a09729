"""WSGI middleware and the session interface: what every request goes through before a view."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response
from flask.sessions import SecureCookieSessionInterface, SessionInterface, SessionMixin

FOLDED_PREFIX = "/api/v1/auth/"


class NormalizeAPIPath:
    """WSGI middleware: one spelling per /api/v1/auth endpoint.

    Case, repeated slashes and a missing trailing slash are folded before routing, so
    `/API//v1/auth/login` reaches the same view (and later the same rate-limit key) as
    `/api/v1/auth/login/`, without a redirect that a POST would not survive.
    """

    _slashes = re.compile(r"/{2,}")

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        folded = self._slashes.sub("/", path)
        if folded.lower().startswith(FOLDED_PREFIX):
            folded = _fold_route_words(folded)
            if not folded.endswith("/"):
                folded += "/"
            environ["PATH_INFO"] = folded
        return self.wsgi_app(environ, start_response)


def _fold_route_words(path: str) -> str:
    """Lower-case the path's route words, not the identifiers in it: a client id made before
    ids became lower-case hex (base64url) names its consent only in its own case."""
    segments = path.split("/")
    folded = []
    keep_case = False
    for segment in segments:
        folded.append(segment if keep_case else segment.lower())
        keep_case = segment.lower() in _FOLLOWED_BY_AN_ID
    return "/".join(folded)


# The route words followed by an identifier (`/consents/<client_id>/`).
_FOLLOWED_BY_AN_ID = frozenset({"consents"})


class BoundUnsizedBody:
    """WSGI middleware: a body sent without Content-Length (chunked) gets one, or a 413.

    Werkzeug limits such a stream to MAX_CONTENT_LENGTH by silently cutting it, so a chunked
    body over the limit would be parsed from its first bytes instead of refused. Here the body
    is read up to one byte past the limit and handed on with its length, so an oversized one
    meets the same 413 as a body whose Content-Length says so.
    """

    _read_size = 64 * 1024

    def __init__(self, wsgi_app: Any, limit: int) -> None:
        self.wsgi_app = wsgi_app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            stream = environ["wsgi.input"]
            chunks: list[bytes] = []
            remaining = self.limit + 1
            while remaining > 0:
                chunk = stream.read(min(remaining, self._read_size))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            body = b"".join(chunks)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            # Werkzeug ignores Content-Length while Transfer-Encoding says chunked.
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.wsgi_app(environ, start_response)


class NoSessions(SessionInterface):
    """No cookie session, except on the hosted pages, where it holds only their CSRF token.

    Callers of the API and the OAuth endpoints authenticate with bearer tokens or client
    credentials, never with a cookie: there `session` is Flask's null session, which refuses
    writes, and no signer is built. The hosted pages (`page_prefixes`) get Flask's signed
    cookie session, which Flask-WTF keeps its CSRF token in; who is signed in is not in it
    (that is the browser-session cookie, idp.http.cookies).
    """

    def __init__(self, page_prefixes: tuple[str, ...] = ()) -> None:
        self.page_prefixes = page_prefixes
        self.signed = SecureCookieSessionInterface()

    def _on_a_page(self, request: Any) -> bool:
        return bool(self.page_prefixes) and request.path.startswith(self.page_prefixes)

    def open_session(self, app: Flask, request: Any) -> SessionMixin | None:
        if self._on_a_page(request):
            return self.signed.open_session(app, request)
        return None  # Flask falls back to its null session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        from flask import request

        if self._on_a_page(request):
            self.signed.save_session(app, session, response)
