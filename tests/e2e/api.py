"""The /api/v1/auth endpoints (and JWKS) of one server, over real HTTP, for the e2e tests."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

import requests

from tests.e2e.conftest import REQUEST_TIMEOUT, Gunicorn
from tests.flows import PASSWORD

API = "/api/v1/auth"
_counter = itertools.count()


def unique_email(prefix: str) -> str:
    """An address no other test, run or instance has used."""
    return f"{prefix}{next(_counter)}-{uuid.uuid4().hex[:8]}@example.com"


def status_is(expected: int) -> Callable[[Any], None]:
    def check(response: Any) -> None:
        assert response.status_code == expected, (response.status_code, response.text)

    return check


class Api:
    """The /api/v1/auth endpoints of one server; keyword arguments go to requests."""

    timeout = REQUEST_TIMEOUT

    def __init__(self, server: Gunicorn) -> None:
        self.server = server
        self.base = server.url

    def post(self, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return requests.post(f"{self.base}{API}/{path}/", json=body, timeout=self.timeout, **kwargs)

    def register(self, email: str, password: str = PASSWORD, **kwargs: Any) -> Any:
        body = {"email": email, "password": password, "first_name": "Ada", "last_name": "L"}
        return self.post("register", body, **kwargs)

    def verify_email(self, token: str, **kwargs: Any) -> Any:
        return self.post("verify-email", {"token": token}, **kwargs)

    def login(self, email: str, password: str = PASSWORD, **kwargs: Any) -> Any:
        return self.post("login", {"email": email, "password": password}, **kwargs)

    def logout(self, session: dict[str, Any], **kwargs: Any) -> Any:
        return self.post(
            "logout",
            {"refresh_token": session["refresh_token"]},
            headers={"Authorization": f"Bearer {session['token']}"},
            **kwargs,
        )

    def reset(self, email: str, **kwargs: Any) -> Any:
        return self.post("password-reset", {"email": email}, **kwargs)

    def refresh(self, refresh_token: str, **kwargs: Any) -> Any:
        return self.post("token/refresh", {"refresh_token": refresh_token}, **kwargs)

    def verify_token(self, token: str, **kwargs: Any) -> Any:
        return requests.get(
            f"{self.base}{API}/verify-token/",
            headers={"Authorization": f"Bearer {token}"},
            timeout=self.timeout,
            **kwargs,
        )

    def jwks(self, **kwargs: Any) -> Any:
        return requests.get(f"{self.base}/.well-known/jwks.json", timeout=self.timeout, **kwargs)
