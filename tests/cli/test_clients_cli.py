"""`flask clients create|list|delete`, and what a client made or deleted there can do over OAuth.

Names and ids that could fool the admin are tests/cli/test_cli_misuse.py.
"""

from __future__ import annotations

import re
import time

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select

from idp.extensions import db
from idp.models import RefreshSession
from tests.api.test_authorization_code import refresh, tokens_for
from tests.api.test_oauth import (
    REVOKE,
    Credentials,
    assert_oauth_error,
    client_token,
    introspect,
    new_client,
)
from tests.flows import register_and_verify, unique_email, verify_token
from tests.oidc_flows import bearer, register_app


@pytest.fixture
def service(app: Flask) -> Credentials:
    """A confidential client, as a resource server or a backend job would be registered."""
    return new_client(app)


def cli_create(runner: FlaskCliRunner, name: str, scope: str) -> Credentials:
    result = runner.invoke(args=["clients", "create", name, "--scope", scope])
    assert result.exit_code == 0, result.output
    client_id = re.search(r"^client_id: (\S+)$", result.output, re.MULTILINE)
    secret = re.search(r"^client_secret: (\S+)$", result.output, re.MULTILINE)
    assert client_id and secret, result.output
    return Credentials(client_id.group(1), secret.group(1))


def test_a_client_created_by_the_cli_gets_tokens(runner, client):
    creds = cli_create(runner, "svc", "read write")
    response = client_token(client, creds)
    assert response.status_code == 200, response.json
    assert response.json["scope"] == "read write"


def test_a_deleted_client_loses_its_tokens_and_its_access(runner, client, service):
    doomed = cli_create(runner, "doomed", "read write")
    token = client_token(client, doomed).json["access_token"]
    assert introspect(client, service, token).json["active"] is True

    result = runner.invoke(args=["clients", "delete", doomed.client_id])
    assert result.exit_code == 0, result.output

    assert introspect(client, service, token).json == {"active": False}
    assert_oauth_error(client_token(client, doomed), 401, "invalid_client")
    response = client_token(client, doomed, "post")
    assert_oauth_error(response, 401, "invalid_client")
    # It cannot introspect or revoke either.
    assert_oauth_error(introspect(client, doomed, token), 401, "invalid_client")
    response = client.post(REVOKE, data={"token": token}, auth=doomed.basic)
    assert_oauth_error(response, 401, "invalid_client")

    listed = runner.invoke(args=["clients", "list"])
    assert listed.exit_code == 0
    assert doomed.client_id not in listed.output
    assert service.client_id in listed.output
    # Deleting twice is an error, not a silent success.
    assert runner.invoke(args=["clients", "delete", doomed.client_id]).exit_code != 0


def test_a_client_deleted_by_another_process_gets_nothing_usable_and_is_refused_soon(
    make_app, app, runner, client, service
):
    """Client rows are remembered per process for a few seconds (RecentClients): in that
    window a client deleted elsewhere may still be issued a token, which nothing accepts."""
    app.extensions["idp.services"].clients.ttl = 3.0
    doomed = cli_create(runner, "doomed-elsewhere", "read")
    assert client_token(client, doomed).status_code == 200  # now remembered here

    elsewhere = make_app()
    result = elsewhere.test_cli_runner().invoke(args=["clients", "delete", doomed.client_id])
    assert result.exit_code == 0, result.output

    late = client_token(client, doomed)
    assert late.status_code == 200  # inside the window
    token = late.json["access_token"]
    assert introspect(client, service, token).json == {"active": False}
    assert introspect(elsewhere.test_client(), service, token).json == {"active": False}
    time.sleep(3.1)
    assert_oauth_error(client_token(client, doomed), 401, "invalid_client")


def test_deleting_an_app_ends_its_users_sessions_and_their_tokens(
    app, runner, client, service, mailbox
):
    """The users' tokens name their session, not only the client: deleting the app ends those
    sessions, so userinfo, introspection, the API and refresh all refuse them at once."""
    relying = register_app(app, first_party=True)
    email = unique_email("deleted-app")
    register_and_verify(client, mailbox, email)
    tokens = tokens_for(client, app.test_client(), relying, email, scope="openid offline_access")
    access = tokens["access_token"]
    assert client.get("/oauth/userinfo", headers=bearer(access)).status_code == 200
    assert introspect(client, service, access).json["active"] is True

    result = runner.invoke(args=["clients", "delete", relying.client_id])
    assert result.exit_code == 0, result.output

    assert client.get("/oauth/userinfo", headers=bearer(access)).status_code == 401
    assert introspect(client, service, access).json == {"active": False}
    assert verify_token(client, access).status_code == 401
    assert_oauth_error(refresh(client, relying, tokens["refresh_token"]), 401, "invalid_client")
    with app.app_context():
        (reason,) = db.session.scalars(
            select(RefreshSession.revoked_reason).where(
                RefreshSession.client_id == relying.client_id
            )
        ).all()
    assert reason == "client_deleted"
