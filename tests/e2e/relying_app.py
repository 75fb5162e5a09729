"""A tiny relying app for the browser tests, served from a thread on 127.0.0.1.

/login sends the browser to idp's authorization endpoint (PKCE S256, state, nonce); /cb records
the query string it is sent back with and says "Signed in"; /signed-out is where idp returns
the browser after sign-out. Redeeming the code is left to the test.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode


@dataclass(frozen=True)
class Login:
    """What the app remembers of one authorization request it started."""

    state: str
    nonce: str
    code_verifier: str


class RelyingApp:
    """One app on a port of its own; set `client_id` (and a secret) once the admin registered it."""

    def __init__(self, authorization_endpoint: str, scope: str = "openid profile email") -> None:
        self.authorization_endpoint = authorization_endpoint
        self.scope = scope
        self.client_id = ""
        self.client_secret: str | None = None  # a confidential app's, for the code's redemption
        self.logins: dict[str, Login] = {}  # by state
        self.callbacks: list[dict[str, str]] = []  # every query string /cb received
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.app = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def redirect_uri(self) -> str:
        return f"{self.url}/cb"

    @property
    def signed_out_uri(self) -> str:
        return f"{self.url}/signed-out"

    def start_login(self) -> str:
        """Remember a new state, nonce and PKCE verifier; return the authorization URL."""
        login = Login(
            secrets.token_urlsafe(16), secrets.token_urlsafe(16), secrets.token_urlsafe(48)
        )
        self.logins[login.state] = login
        digest = hashlib.sha256(login.code_verifier.encode("ascii")).digest()
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": login.state,
            "nonce": login.nonce,
            "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"),
            "code_challenge_method": "S256",
        }
        return f"{self.authorization_endpoint}?{urlencode(params)}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        app: RelyingApp = self.server.app  # type: ignore[attr-defined]
        path, _, query = self.path.partition("?")
        if path == "/login":
            self.send_response(302)
            self.send_header("Location", app.start_login())
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/cb":
            app.callbacks.append(dict(parse_qsl(query)))
            self._page("Signed in")
        elif path == "/signed-out":
            self._page("Signed out")
        else:
            self.send_error(404)

    def _page(self, heading: str) -> None:
        body = (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>Relying app</title></head><body><h1>{heading}</h1></body></html>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows what the tests assert, not an access log."""
