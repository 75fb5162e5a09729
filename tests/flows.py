"""Short user journeys through the HTTP API, for tests that need a user in some state."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from flask.testing import FlaskClient

from tests.support import Mailbox

# The password of every test account, unless a test needs a second one; the e2e tests use it too.
PASSWORD = "Correct-Horse-7"
# The built-in public client (the /api facade's own), with no row in the clients table.
API_CLIENT_ID = "idp-api"
API = "/api/v1/auth"
_counter = itertools.count()


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}{next(_counter)}@example.com"


@dataclass
class LoggedIn:
    email: str
    password: str
    user_id: str
    token: str
    refresh_token: str
    body: dict[str, Any]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def register(client: FlaskClient, email: str, password: str = PASSWORD, **extra: Any) -> Any:
    body = {"email": email, "password": password, "first_name": "Ada", "last_name": "Lovelace"}
    body.update(extra)
    return client.post(f"{API}/register/", json=body)


def register_and_verify(
    client: FlaskClient, mailbox: Mailbox, email: str, password: str = PASSWORD, **extra: Any
) -> str:
    response = register(client, email, password, **extra)
    assert response.status_code == 201, response.json
    token = mailbox.wait_for(email)[-1].token
    verified = client.post(f"{API}/verify-email/", json={"token": token})
    assert verified.status_code == 200, verified.json
    return response.json["data"]["user_id"]


def login(client: FlaskClient, email: str, password: str = PASSWORD) -> Any:
    return client.post(f"{API}/login/", json={"email": email, "password": password})


def logged_in_user(client: FlaskClient, mailbox: Mailbox, email: str | None = None) -> LoggedIn:
    email = email or unique_email()
    user_id = register_and_verify(client, mailbox, email)
    response = login(client, email)
    assert response.status_code == 200, response.json
    data = response.json["data"]
    return LoggedIn(email, PASSWORD, user_id, data["token"], data["refresh_token"], response.json)


def settle(client: FlaskClient) -> None:
    """Wait for the app's background jobs (the mails and look-ups sent after an answer)."""
    assert client.application.extensions["idp.services"].jobs.drain()


def verify_token(client: FlaskClient, token: str) -> Any:
    return client.get(f"{API}/verify-token/", headers={"Authorization": f"Bearer {token}"})
