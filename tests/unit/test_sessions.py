"""SessionService: refresh-token families, rotation, reuse detection, the grace, logout."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from idp import transaction
from idp.errors import InvalidAccessToken, InvalidRefreshToken, TokenMismatch
from idp.extensions import db
from idp.models import RefreshSession, RefreshToken, RevokedAccessToken
from idp.services.registry import get_services
from idp.services.secret_tokens import digest
from idp.services.sessions import API_SCOPE, LOGOUT, REUSE_DETECTED
from tests.flows import API_CLIENT_ID
from tests.unit.service_support import NOW, add_user

LATER = NOW + timedelta(seconds=10)


def started(now=NOW, client_id=API_CLIENT_ID):
    """A committed session for a fresh user; returns its first pair."""
    pair = get_services().sessions.start(add_user(), client_id, API_SCOPE, now)
    transaction.commit()
    return pair


def session_row(public_id: str) -> RefreshSession:
    db.session.rollback()  # read what is committed, nothing this test staged
    return db.session.scalar(select(RefreshSession).where(RefreshSession.public_id == public_id))


def test_start_returns_a_pair_whose_access_token_verifies_for_the_session(app):
    with app.app_context():
        pair = started()
        access = get_services().access_tokens.verify(pair.access_token, NOW)
        stored = db.session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == digest(pair.refresh_token))
        )
    assert access.claims["sid"] == pair.session_id
    assert access.claims["sub"] == pair.user.public_id == access.user.public_id
    assert (access.claims["client_id"], access.scopes) == (API_CLIENT_ID, {"profile", "email"})
    assert pair.expires_in == 3600
    # Stored as a digest only, expiring one refresh TTL after the login.
    assert stored.used_at is None
    assert stored.expires_at == NOW + timedelta(days=14)


def test_a_refresh_token_rotates_once_into_a_new_pair(app):
    with app.app_context():
        sessions = get_services().sessions
        first = started()
        second = sessions.rotate(first.refresh_token, API_CLIENT_ID, LATER)
        transaction.commit()
        assert second.session_id == first.session_id
        assert second.refresh_token != first.refresh_token
        assert second.access_token != first.access_token
        get_services().access_tokens.verify(second.access_token, LATER)
        # The new token rotates in its turn.
        sessions.rotate(second.refresh_token, API_CLIENT_ID, LATER)
        transaction.commit()


def test_a_replayed_token_revokes_the_session_and_the_revocation_persists(app, audit_output):
    with app.app_context():
        sessions, access_tokens = get_services().sessions, get_services().access_tokens
        first = started()
        second = sessions.rotate(first.refresh_token, API_CLIENT_ID, LATER)
        transaction.commit()
        with pytest.raises(InvalidRefreshToken):
            sessions.rotate(first.refresh_token, API_CLIENT_ID, LATER)
        # No commit by the caller: the service committed the revocation before raising.
        row = session_row(first.session_id)
        assert (row.revoked_at, row.revoked_reason) == (LATER, REUSE_DETECTED)
        # The whole family ends: the live branch and its access token too.
        with pytest.raises(InvalidRefreshToken):
            sessions.rotate(second.refresh_token, API_CLIENT_ID, LATER)
        with pytest.raises(InvalidAccessToken):
            access_tokens.verify(second.access_token, LATER)
    assert '"event":"session.reuse_detected"' in audit_output.getvalue()


@pytest.mark.parametrize(
    ("grace", "replayed_after", "gets_a_pair"),
    [
        (0, 1, False),  # strict by default: any replay is reuse
        (30, 10, True),  # two tabs refreshing at once
        (30, 29, True),
        (30, 31, False),  # outside the grace
    ],
)
def test_a_replay_within_the_reuse_grace_gets_one_sibling_pair(
    make_app, grace, replayed_after, gets_a_pair
):
    app = make_app(IDP_REFRESH_REUSE_GRACE=grace)
    with app.app_context():
        sessions = get_services().sessions
        first = started()
        sessions.rotate(first.refresh_token, API_CLIENT_ID, NOW)
        transaction.commit()
        late = NOW + timedelta(seconds=replayed_after)
        if gets_a_pair:
            sibling = sessions.rotate(first.refresh_token, API_CLIENT_ID, late)
            transaction.commit()
            assert sibling.session_id == first.session_id
            assert session_row(first.session_id).revoked_at is None
        # A (further) copy is reuse, even within the grace.
        with pytest.raises(InvalidRefreshToken):
            sessions.rotate(first.refresh_token, API_CLIENT_ID, late)
        assert session_row(first.session_id).revoked_reason == REUSE_DETECTED


@pytest.mark.parametrize("spent_first", [False, True])
def test_a_token_presented_by_another_client_is_refused_and_revokes_nothing(app, spent_first):
    with app.app_context():
        sessions = get_services().sessions
        pair = started()
        if spent_first:
            sessions.rotate(pair.refresh_token, API_CLIENT_ID, NOW)
            transaction.commit()
        with pytest.raises(InvalidRefreshToken):
            sessions.rotate(pair.refresh_token, "another-client", LATER)
        assert session_row(pair.session_id).revoked_at is None


def test_an_inactive_users_token_is_refused_and_stays_unspent(app):
    with app.app_context():
        pair = started()
        pair.user.is_active = False
        transaction.commit()
        with pytest.raises(InvalidRefreshToken):
            get_services().sessions.rotate(pair.refresh_token, API_CLIENT_ID, LATER)
        db.session.rollback()
        token = get_services().sessions.find_by_refresh_token(pair.refresh_token)
        assert token.used_at is None
        assert token.session.revoked_at is None


def test_rotation_slides_the_expiry_but_never_past_the_sessions_max_age(make_app):
    app = make_app(IDP_REFRESH_TOKEN_TTL=300, IDP_SESSION_MAX_AGE=600)
    with app.app_context():
        sessions = get_services().sessions
        pair = started()
        expiries = []
        for at in (250, 500):
            pair = sessions.rotate(pair.refresh_token, API_CLIENT_ID, NOW + timedelta(seconds=at))
            transaction.commit()
            expiries.append(sessions.find_by_refresh_token(pair.refresh_token).expires_at)
        assert expiries == [NOW + timedelta(seconds=550), NOW + timedelta(seconds=600)]
        with pytest.raises(InvalidRefreshToken):
            sessions.rotate(pair.refresh_token, API_CLIENT_ID, NOW + timedelta(seconds=600))
        # Expiry is not reuse: the session is left as it was.
        assert session_row(pair.session_id).revoked_at is None


def test_logout_denylists_the_access_token_and_ends_its_session(app):
    with app.app_context():
        services = get_services()
        pair = started()
        access = services.access_tokens.verify(pair.access_token, NOW)
        services.sessions.logout(access, pair.access_token, None, None, NOW)
        transaction.commit()
        denied = db.session.get(RevokedAccessToken, access.jti)
        assert denied.expires_at.timestamp() == access.claims["exp"]
        assert session_row(pair.session_id).revoked_reason == LOGOUT
        with pytest.raises(InvalidAccessToken):
            services.access_tokens.verify(pair.access_token, NOW)
        with pytest.raises(InvalidRefreshToken):
            services.sessions.rotate(pair.refresh_token, API_CLIENT_ID, NOW)


def test_logout_ends_the_named_refresh_session_of_the_same_user(app):
    with app.app_context():
        services = get_services()
        pair = started()
        other = services.sessions.start(pair.user, API_CLIENT_ID, API_SCOPE, NOW)
        transaction.commit()
        access = services.access_tokens.verify(pair.access_token, NOW)
        services.sessions.logout(access, None, pair.access_token, other.refresh_token, NOW)
        transaction.commit()
        assert session_row(other.session_id).revoked_reason == LOGOUT


@pytest.mark.parametrize("mismatch", ["body_token", "foreign_refresh_token"])
def test_logout_with_tokens_of_another_session_changes_nothing(app, mismatch):
    with app.app_context():
        services = get_services()
        pair, stranger = started(), started()
        access = services.access_tokens.verify(pair.access_token, NOW)
        body, refresh = pair.access_token, None
        if mismatch == "body_token":
            body = stranger.access_token
        else:
            refresh = stranger.refresh_token
        with pytest.raises(TokenMismatch):
            services.sessions.logout(access, pair.access_token, body, refresh, NOW)
        transaction.commit()
        assert db.session.get(RevokedAccessToken, access.jti) is None
        assert session_row(pair.session_id).revoked_at is None
        assert session_row(stranger.session_id).revoked_at is None


def test_revoke_all_for_user_returns_only_the_sessions_it_ended(app):
    with app.app_context():
        sessions = get_services().sessions
        pair = started()
        live = sessions.start(pair.user, API_CLIENT_ID, API_SCOPE, NOW)
        ended = sessions.start(pair.user, API_CLIENT_ID, API_SCOPE, NOW)
        started()  # another user's session
        transaction.commit()
        access = get_services().access_tokens.verify(ended.access_token, NOW)
        sessions.logout(access, None, None, None, NOW)
        transaction.commit()
        revoked = sessions.revoke_all_for_user(pair.user, "password_reset", LATER)
        transaction.commit()
    assert sorted(revoked) == sorted([pair.session_id, live.session_id])
