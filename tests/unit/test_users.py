"""idp.services.users: what an admin's disable, enable and sign-out change, and the login race."""

from __future__ import annotations

from datetime import timedelta

import pytest

from idp import transaction
from idp.errors import InvalidAccessToken, InvalidCredentials
from idp.extensions import db
from idp.models import RefreshToken, User
from idp.services import users
from idp.services.registry import get_services
from idp.services.sessions import API_SCOPE
from tests.flows import API_CLIENT_ID, PASSWORD
from tests.unit.service_support import NOW, add_user

LATER = NOW + timedelta(seconds=10)


def test_disable_ends_sessions_and_tokens_and_enable_revives_neither(app):
    with app.app_context():
        services = get_services()
        user = add_user()
        pair = services.sessions.start(user, API_CLIENT_ID, API_SCOPE, NOW)
        transaction.commit()

        ended = users.disable_user(user.email, services.sessions, LATER)
        transaction.commit()
        assert ended == users.EndedSessions(refresh=1, browser=0)
        assert users.disable_user(user.email, services.sessions, LATER) is None
        assert users.enable_user(user.email, LATER) is True
        transaction.commit()

        user = db.session.get(User, user.id)
        assert (user.disabled_at, user.is_active, user.sessions_valid_after) == (None, True, LATER)
        assert users.state_of(user) == users.ACTIVE
        with pytest.raises(InvalidAccessToken):
            services.access_tokens.verify(pair.access_token, LATER)


def test_only_sessions_with_a_spendable_token_are_live(app):
    with app.app_context():
        sessions = get_services().sessions
        user = add_user()
        sessions.start(user, API_CLIENT_ID, API_SCOPE, NOW)
        stale = sessions.start(user, API_CLIENT_ID, API_SCOPE, NOW)
        transaction.commit()
        db.session.query(RefreshToken).filter(
            RefreshToken.session.has(public_id=stale.session_id)
        ).update({"expires_at": NOW}, synchronize_session=False)
        transaction.commit()
        assert users.describe_user(user.email, LATER).live_refresh_sessions == 1


def test_a_disable_committed_while_the_password_is_checked_refuses_the_login(
    app, monkeypatch, audit_output
):
    with app.app_context():
        services = get_services()
        user = add_user()
        user.password_hash = services.passwords.hash(PASSWORD)
        email = user.email
        transaction.commit()
        check = services.passwords.check

        def check_while_an_admin_disables(stored_hash, password):
            # Another process (its own session) disables the account during the slow hash,
            # after the login read the account's row.
            with app.app_context():
                users.disable_user(email, services.sessions, NOW)
                transaction.commit()
            return check(stored_hash, password)

        monkeypatch.setattr(services.passwords, "check", check_while_an_admin_disables)
        with pytest.raises(InvalidCredentials):
            services.accounts.authenticate(email, PASSWORD, LATER)
        assert db.session.get(User, user.id).last_login_at is None
    assert '"reason":"disabled"' in audit_output.getvalue()


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("ada@example.com", "ada@example.com"),
        ("ü@exämple.com", "ü@exämple.com"),
        ("a\nb", "a\\nb"),
        ("a\x1b[31mb", "a\\x1b[31mb"),
        ("a\u202eb", "a\\u202eb"),
        ("a\u2028b", "a\\u2028b"),
    ],
)
def test_printable_escapes_what_could_fool_a_terminal(text, shown):
    assert users.printable(text) == shown
