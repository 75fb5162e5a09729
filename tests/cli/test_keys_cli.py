"""The `flask keys list|rotate|activate|retire` commands on a real app and a real keys folder."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt as pyjwt
import pytest

from idp.services.keys import ACTIVE, MANIFEST, RETIRED, STAGED, VERIFY_ONLY
from tests.flows import logged_in_user, login, verify_token
from tests.unit.test_keys import manifest, pem_files


@pytest.fixture
def keys_app(make_app, tmp_path):
    return make_app(IDP_KEYS_DIR=str(tmp_path), IDP_KEYS_RELOAD_INTERVAL=1)


def invoke(app, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["keys", *args])


def kid_of(token: str) -> str:
    return pyjwt.get_unverified_header(token)["kid"]


def test_cli_list_shows_every_key_with_its_status(keys_app, tmp_path):
    (first,) = manifest(tmp_path)
    staged = invoke(keys_app, "rotate", "--staged").stdout.strip()

    result = invoke(keys_app, "list")

    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    rows = {line.split()[0]: line.split() for line in lines}
    assert rows[first][-1] == ACTIVE
    assert rows[staged][-1] == STAGED
    assert all(len(row) == 3 for row in rows.values())


def test_cli_rotate_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key(
    keys_app, tmp_path, mailbox
):
    client = keys_app.test_client()
    (old_kid,) = manifest(tmp_path)
    user = logged_in_user(client, mailbox)
    assert kid_of(user.token) == old_kid

    result = invoke(keys_app, "rotate")

    assert result.exit_code == 0, result.output
    new_kid = result.stdout.strip()
    assert new_kid != old_kid
    assert manifest(tmp_path) == {old_kid: VERIFY_ONLY, new_kid: ACTIVE}
    assert verify_token(client, user.token).status_code == 200
    fresh = login(client, user.email)
    assert fresh.status_code == 200, fresh.json
    assert kid_of(fresh.json["data"]["token"]) == new_kid
    assert verify_token(client, fresh.json["data"]["token"]).status_code == 200
    jwks = client.get("/.well-known/jwks.json").json
    assert {key["kid"] for key in jwks["keys"]} == {old_kid, new_kid}


def test_cli_rotation_by_another_process_reaches_the_server(make_app, tmp_path, mailbox):
    server = make_app(IDP_KEYS_DIR=str(tmp_path), IDP_KEYS_RELOAD_INTERVAL=1)
    admin = make_app(IDP_KEYS_DIR=str(tmp_path), IDP_KEYS_RELOAD_INTERVAL=1)
    client = server.test_client()
    user = logged_in_user(client, mailbox)

    result = invoke(admin, "rotate")
    assert result.exit_code == 0, result.output
    new_kid = result.stdout.strip()
    time.sleep(1.1)

    fresh = login(client, user.email)
    assert kid_of(fresh.json["data"]["token"]) == new_kid
    assert verify_token(client, user.token).status_code == 200

    result = invoke(admin, "retire", kid_of(user.token))
    assert result.exit_code == 0, result.output
    time.sleep(1.1)

    assert verify_token(client, user.token).status_code == 401
    assert verify_token(client, fresh.json["data"]["token"]).status_code == 200


def test_cli_staged_rotation_then_activate(keys_app, tmp_path, mailbox):
    client = keys_app.test_client()
    (old_kid,) = manifest(tmp_path)
    user = logged_in_user(client, mailbox)

    result = invoke(keys_app, "rotate", "--staged")

    assert result.exit_code == 0, result.output
    staged = result.stdout.strip()
    assert manifest(tmp_path) == {old_kid: ACTIVE, staged: STAGED}
    jwks = client.get("/.well-known/jwks.json").json
    assert {key["kid"] for key in jwks["keys"]} == {old_kid, staged}
    before = login(client, user.email)
    assert kid_of(before.json["data"]["token"]) == old_kid

    result = invoke(keys_app, "activate", staged)

    assert result.exit_code == 0, result.output
    assert staged in result.output
    assert manifest(tmp_path) == {old_kid: VERIFY_ONLY, staged: ACTIVE}
    after = login(client, user.email)
    assert kid_of(after.json["data"]["token"]) == staged
    assert verify_token(client, user.token).status_code == 200
    assert verify_token(client, after.json["data"]["token"]).status_code == 200


def test_cli_retire_makes_old_tokens_fail(keys_app, tmp_path, mailbox):
    client = keys_app.test_client()
    (old_kid,) = manifest(tmp_path)
    user = logged_in_user(client, mailbox)
    new_kid = invoke(keys_app, "rotate").stdout.strip()
    fresh = login(client, user.email).json["data"]["token"]

    result = invoke(keys_app, "retire", old_kid)

    assert result.exit_code == 0, result.output
    assert old_kid in result.output
    assert manifest(tmp_path) == {old_kid: RETIRED, new_kid: ACTIVE}
    assert pem_files(tmp_path) == {new_kid}
    response = verify_token(client, user.token)
    assert response.status_code == 401
    assert response.json["success"] is False
    assert verify_token(client, fresh).status_code == 200
    jwks = client.get("/.well-known/jwks.json").json
    assert {key["kid"] for key in jwks["keys"]} == {new_kid}


def test_cli_refuses_to_retire_the_active_key(keys_app, tmp_path, mailbox):
    client = keys_app.test_client()
    (kid,) = manifest(tmp_path)
    user = logged_in_user(client, mailbox)

    result = invoke(keys_app, "retire", kid)

    assert result.exit_code != 0
    assert "signing key" in result.output
    assert manifest(tmp_path) == {kid: ACTIVE}
    assert pem_files(tmp_path) == {kid}
    assert verify_token(client, user.token).status_code == 200
    assert login(client, user.email).status_code == 200


@pytest.mark.parametrize("command", ["retire", "activate"])
# base64url kids may start with "-": they must still reach the command as its argument.
@pytest.mark.parametrize("kid", ["no-such-kid", "-4no-such-kid", "--no-such-kid"])
def test_cli_refuses_unknown_kids(keys_app, tmp_path, command, kid):
    before = (tmp_path / MANIFEST).read_bytes()

    result = invoke(keys_app, command, kid)

    assert result.exit_code == 1, result.output
    assert f"no key with kid {kid}" in result.output
    assert (tmp_path / MANIFEST).read_bytes() == before


def test_cli_refuses_to_activate_the_active_key(keys_app, tmp_path):
    (kid,) = manifest(tmp_path)

    result = invoke(keys_app, "activate", kid)

    assert result.exit_code != 0
    assert "only staged or verify-only" in result.output


def test_a_commands_audit_line_names_the_command(runner, audit_output):
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    (event,) = [json.loads(line) for line in audit_output.getvalue().splitlines()]
    assert (event["event"], event["actor"], event["command"]) == (
        "key.rotated",
        "cli",
        "keys rotate",
    )
