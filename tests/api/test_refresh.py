import threading
from datetime import timedelta

from sqlalchemy import update

from idp.clock import utcnow
from idp.extensions import db
from idp.models import RefreshToken
from tests.flows import API, logged_in_user, verify_token


def refresh(client, token):
    return client.post(f"{API}/token/refresh/", json={"refresh_token": token})


def test_refresh_rotates_the_pair(client, mailbox):
    user = logged_in_user(client, mailbox)
    response = refresh(client, user.refresh_token)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    data = response.json["data"]
    assert data["refresh_token"] != user.refresh_token
    assert data["token"] != user.token
    assert verify_token(client, data["token"]).status_code == 200
    assert refresh(client, data["refresh_token"]).status_code == 200


def test_replaying_a_spent_refresh_token_revokes_the_whole_family(client, mailbox):
    user = logged_in_user(client, mailbox)
    rotated = refresh(client, user.refresh_token).json["data"]
    replay = refresh(client, user.refresh_token)
    assert replay.status_code == 401
    assert replay.json["code"] == "invalid_refresh_token"
    # The thief's replay also ends the legitimate branch and its access tokens.
    assert refresh(client, rotated["refresh_token"]).status_code == 401
    assert verify_token(client, rotated["token"]).status_code == 401
    assert verify_token(client, user.token).status_code == 401


def test_other_sessions_survive_a_reuse_in_one_session(client, mailbox):
    user = logged_in_user(client, mailbox)
    other = client.post(f"{API}/login/", json={"email": user.email, "password": user.password})
    refresh(client, user.refresh_token)
    refresh(client, user.refresh_token)
    assert verify_token(client, other.json["data"]["token"]).status_code == 200


def test_concurrent_refreshes_never_leave_two_live_branches(app, client, mailbox):
    user = logged_in_user(client, mailbox)
    barrier = threading.Barrier(4)
    results: list[tuple[int, str | None]] = []

    def attempt() -> None:
        own = app.test_client()
        barrier.wait()
        response = refresh(own, user.refresh_token)
        data = response.json.get("data") or {}
        results.append((response.status_code, data.get("refresh_token")))

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [token for status, token in results if status == 200]
    assert len(winners) <= 1
    assert sum(1 for status, _ in results if status == 401) >= 3
    live = [token for token in winners if refresh(client, token).status_code == 200]
    assert live == []  # strict mode: the replays revoked the family


def test_grace_window_lets_a_just_rotated_token_be_replayed(make_app, mailbox):
    client = make_app(IDP_REFRESH_REUSE_GRACE=30).test_client()
    user = logged_in_user(client, mailbox)
    first = refresh(client, user.refresh_token)
    second = refresh(client, user.refresh_token)
    assert first.status_code == second.status_code == 200
    assert verify_token(client, second.json["data"]["token"]).status_code == 200
    assert refresh(client, first.json["data"]["refresh_token"]).status_code == 200


def test_the_grace_gives_one_sibling_pair_and_a_second_replay_is_reuse(make_app, mailbox):
    client = make_app(IDP_REFRESH_REUSE_GRACE=30).test_client()
    user = logged_in_user(client, mailbox)
    first = refresh(client, user.refresh_token)
    sibling = refresh(client, user.refresh_token)
    assert first.status_code == sibling.status_code == 200
    # A third copy within the grace: the token has had its sibling, so this is a thief.
    assert refresh(client, user.refresh_token).status_code == 401
    for pair in (first.json["data"], sibling.json["data"]):
        assert verify_token(client, pair["token"]).status_code == 401
        assert refresh(client, pair["refresh_token"]).status_code == 401


def test_grace_window_does_not_cover_an_old_replay(make_app, mailbox):
    app = make_app(IDP_REFRESH_REUSE_GRACE=5)
    client = app.test_client()
    user = logged_in_user(client, mailbox)
    rotated = refresh(client, user.refresh_token).json["data"]
    with app.app_context():
        db.session.execute(
            update(RefreshToken)
            .where(RefreshToken.used_at.is_not(None))
            .values(used_at=utcnow() - timedelta(seconds=6))
        )
        db.session.commit()
    assert refresh(client, user.refresh_token).status_code == 401
    assert refresh(client, rotated["refresh_token"]).status_code == 401


def test_an_expired_refresh_token_is_refused(app, client, mailbox):
    user = logged_in_user(client, mailbox)
    with app.app_context():
        db.session.execute(update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert refresh(client, user.refresh_token).status_code == 401


def test_unknown_and_malformed_refresh_tokens(client):
    assert refresh(client, "A" * 43).status_code == 401
    assert refresh(client, "x").status_code == 400
    assert client.post(f"{API}/token/refresh/", json={}).status_code == 400


def test_rotation_never_extends_a_session_past_its_absolute_lifetime(make_app, mailbox):
    from sqlalchemy import select

    from idp.models import RefreshSession

    app = make_app(IDP_SESSION_MAX_AGE=3600, IDP_REFRESH_TOKEN_TTL=7200)
    client = app.test_client()
    user = logged_in_user(client, mailbox)
    with app.app_context():
        session = db.session.scalar(select(RefreshSession))
        token = db.session.scalar(select(RefreshToken))
        assert token.expires_at == session.created_at + timedelta(hours=1)
        # The login happened 59 minutes ago: a rotation now must not reach past the hour.
        session.created_at = utcnow() - timedelta(minutes=59)
        db.session.commit()
    rotated = refresh(client, user.refresh_token)
    assert rotated.status_code == 200
    with app.app_context():
        newest = db.session.scalars(select(RefreshToken).order_by(RefreshToken.id.desc())).first()
        assert newest.expires_at <= utcnow() + timedelta(minutes=1, seconds=5)
        session = db.session.scalar(select(RefreshSession))
        session.created_at = utcnow() - timedelta(hours=2)
        db.session.execute(update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert refresh(client, rotated.json["data"]["refresh_token"]).status_code == 401
