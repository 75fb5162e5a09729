from sqlalchemy import select

from idp.extensions import db
from idp.models import RevokedAccessToken
from tests.flows import API, logged_in_user, verify_token


def logout(client, token, body=None):
    return client.post(
        f"{API}/logout/", json=body or {}, headers={"Authorization": f"Bearer {token}"}
    )


def test_logout_revokes_the_access_token_and_ends_the_session(app, client, mailbox):
    user = logged_in_user(client, mailbox)
    response = logout(client, user.token, {"token": user.token})
    assert response.status_code == 200 and response.json["success"] is True
    assert verify_token(client, user.token).status_code == 401
    again = client.post(f"{API}/token/refresh/", json={"refresh_token": user.refresh_token})
    assert again.status_code == 401
    with app.app_context():
        row = db.session.scalar(select(RevokedAccessToken))
        assert row is not None and int(row.expires_at.timestamp()) > 0


def test_logout_with_the_spec_body_alone(client, mailbox):
    user = logged_in_user(client, mailbox)
    response = client.post(f"{API}/logout/", json={"token": user.token})
    assert response.status_code == 200
    assert verify_token(client, user.token).status_code == 401


def test_logout_without_a_body(client, mailbox):
    user = logged_in_user(client, mailbox)
    response = client.post(f"{API}/logout/", headers=user.auth)
    assert response.status_code == 200
    assert verify_token(client, user.token).status_code == 401


def test_logout_with_an_empty_json_body(client, mailbox):
    # Many HTTP clients send the JSON content type with every request, body or not.
    user = logged_in_user(client, mailbox)
    response = client.post(
        f"{API}/logout/", data="", content_type="application/json", headers=user.auth
    )
    assert response.status_code == 200, response.json
    assert verify_token(client, user.token).status_code == 401


def test_logout_of_one_session_leaves_the_others(client, mailbox):
    user = logged_in_user(client, mailbox)
    other = client.post(f"{API}/login/", json={"email": user.email, "password": user.password})
    logout(client, user.token)
    assert verify_token(client, other.json["data"]["token"]).status_code == 200


def test_logout_also_ends_the_named_refresh_session(client, mailbox):
    user = logged_in_user(client, mailbox)
    other = client.post(f"{API}/login/", json={"email": user.email, "password": user.password})
    other_refresh = other.json["data"]["refresh_token"]
    assert logout(client, user.token, {"refresh_token": other_refresh}).status_code == 200
    assert (
        client.post(f"{API}/token/refresh/", json={"refresh_token": other_refresh}).status_code
        == 401
    )


def test_logout_refuses_someone_elses_refresh_token(client, mailbox):
    alice = logged_in_user(client, mailbox)
    bob = logged_in_user(client, mailbox)
    response = logout(client, alice.token, {"refresh_token": bob.refresh_token})
    assert response.status_code == 400
    assert response.json["code"] == "token_mismatch"
    assert verify_token(client, alice.token).status_code == 200
    refreshed = client.post(f"{API}/token/refresh/", json={"refresh_token": bob.refresh_token})
    assert refreshed.status_code == 200


def test_a_body_token_that_differs_from_the_bearer_is_refused(client, mailbox):
    alice = logged_in_user(client, mailbox)
    bob = logged_in_user(client, mailbox)
    response = logout(client, alice.token, {"token": bob.token})
    assert response.status_code == 400
    assert verify_token(client, alice.token).status_code == 200
    assert verify_token(client, bob.token).status_code == 200


def test_logout_needs_a_live_token(client, mailbox):
    assert client.post(f"{API}/logout/", json={}).status_code == 401
    user = logged_in_user(client, mailbox)
    assert logout(client, user.token).status_code == 200
    assert logout(client, user.token).status_code == 401
