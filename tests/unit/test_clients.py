"""Client services: creation rules, look-up, secret checks, deletion, and RecentClients."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from idp import transaction
from idp.services import clients
from idp.services.clients import (
    ClientCommandError,
    RecentClients,
    check_client_secret,
    create_client,
    delete_client,
    find_client,
    list_clients,
)
from idp.services.registry import get_services
from idp.services.secret_tokens import digest
from tests.unit.service_support import NOW


@pytest.mark.parametrize(
    ("name", "scope", "message"),
    [
        ("", "read", "needs a name"),
        ("   ", "read", "needs a name"),
        ("two\nlines", "read", "control characters"),
        ("escape \x1b[31m red", "read", "control characters"),
        ("bidi \u202e override", "read", "control characters"),
        ("zero\u200bwidth", "read", "control characters"),
        ("x" * 201, "read", "at most 200"),
        ("ok", "s" * 501, "scope 500"),
        ("ok", "read write$", "invalid scope 'write$'"),
        ("ok", "read lécture", "invalid scope"),
    ],
)
def test_create_client_refuses_what_cannot_exist_and_stores_nothing(app, name, scope, message):
    with app.app_context():
        with pytest.raises(ClientCommandError, match=message.replace("$", r"\$")):
            create_client(name, scope, NOW)
        assert list_clients() == []


def test_create_client_stores_a_digest_and_hands_the_secret_out_once(app, audit_output):
    with app.app_context():
        created = create_client("  Reports  ", "read write read", NOW)
        transaction.commit()
        (stored,) = list_clients()
    assert stored.client_id == created.client.client_id
    assert len(stored.client_id) == 32 and int(stored.client_id, 16) >= 0  # hex: never "-..."
    assert stored.client_secret_hash == digest(created.client_secret)
    assert created.client_secret not in stored.client_secret_hash
    assert (stored.name, stored.scope, stored.grant_types) == (
        "Reports",
        "read write",
        "client_credentials",
    )
    (event,) = [json.loads(line) for line in audit_output.getvalue().splitlines()]
    assert (event["event"], event["client_id"]) == ("client.created", stored.client_id)


@pytest.mark.parametrize(
    ("name", "scope"),
    [("x" * 200, "read"), (" " + "x" * 200 + " ", "read"), ("ok", "s" * 500), ("ok", "a " * 300)],
)
def test_the_length_limits_count_what_is_stored(app, name, scope):
    with app.app_context():
        assert create_client(name, scope, NOW).client.client_id


@pytest.mark.parametrize(
    ("secret", "known_client", "expected"),
    [
        ("right", True, True),
        ("wrong", True, False),
        ("", True, False),
        (None, True, False),
        (b"right", True, False),  # not a str
        (12345, True, False),
        ("right", False, False),  # unknown client: no row to compare with
    ],
)
def test_check_client_secret_matches_only_the_right_string_and_audits_a_failure(
    app, audit_output, secret, known_client, expected
):
    with app.app_context():
        created = create_client("Reports", "read", NOW)
        transaction.commit()
        client_id = created.client.client_id
        row = find_client(client_id) if known_client else None
        presented = created.client_secret if secret == "right" else secret
        assert check_client_secret(client_id, row, presented) is expected
    events = [json.loads(line) for line in audit_output.getvalue().splitlines()]
    failures = [e for e in events if e["event"] == "client.auth_failure"]
    assert len(failures) == (0 if expected else 1)
    if failures:
        assert (failures[0]["client_id"], failures[0]["reason"]) == (client_id, "bad_secret")


@pytest.mark.parametrize("client_id", ["nul\x00id", "x" * 65, None, 42, ""])
def test_an_implausible_client_id_finds_nothing_and_raises_no_database_error(app, client_id):
    with app.app_context():
        assert find_client(client_id) is None
        with pytest.raises(ClientCommandError):
            delete_client(client_id, NOW, get_services().sessions)


def test_a_deleted_client_is_gone_for_good(app):
    with app.app_context():
        client_id = create_client("Reports", "read", NOW).client.client_id
        transaction.commit()
        delete_client(client_id, NOW, get_services().sessions)
        transaction.commit()
        assert find_client(client_id) is None
        assert list_clients() == []
        with pytest.raises(ClientCommandError, match="no client"):
            delete_client(client_id, NOW, get_services().sessions)


@pytest.fixture
def clock(monkeypatch):
    """RecentClients' monotonic clock, moved by hand (the real one is left alone)."""
    now = [1000.0]
    monkeypatch.setattr(clients, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


def test_recent_clients_remember_a_client_for_their_ttl(app, clock):
    with app.app_context():
        client_id = create_client("Reports", "read", NOW).client.client_id
        transaction.commit()
        recent = RecentClients(ttl=5.0)
        assert recent.find(client_id).client_id == client_id
        delete_client(client_id, NOW, get_services().sessions)
        transaction.commit()
        clock[0] += 4.9
        assert recent.find(client_id).client_id == client_id  # remembered, by design
        clock[0] += 0.2
        assert recent.find(client_id) is None  # read again, and gone


def test_forget_drops_a_client_at_once(app, clock):
    with app.app_context():
        client_id = create_client("Reports", "read", NOW).client.client_id
        transaction.commit()
        recent = RecentClients(ttl=5.0)
        assert recent.find(client_id) is not None
        delete_client(client_id, NOW, get_services().sessions)
        transaction.commit()
        recent.forget(client_id)
        assert recent.find(client_id) is None
        recent.forget("never-seen")  # forgetting the unknown is harmless


def test_an_unknown_id_is_not_remembered_and_a_zero_ttl_remembers_nothing(app, clock):
    with app.app_context():
        recent, forgetful = RecentClients(ttl=5.0), RecentClients(ttl=0)
        assert recent.find("0" * 32) is None
        client_id = create_client("Reports", "read", NOW).client.client_id
        transaction.commit()
        assert recent.find(client_id) is not None  # a miss was not cached
        assert forgetful.find(client_id) is not None
        delete_client(client_id, NOW, get_services().sessions)
        transaction.commit()
        assert forgetful.find(client_id) is None
