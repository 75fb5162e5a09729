"""A user's approvals through /api/v1/auth/consents/: listed, and withdrawn with their tokens."""

from __future__ import annotations

import dataclasses

from sqlalchemy import update

from idp.extensions import db
from idp.models import OAuthClient
from idp.transaction import commit
from tests.flows import API, login, register_and_verify, unique_email
from tests.oidc_flows import (
    authorize_params,
    follow_to_app,
    pkce,
    query_of,
    redeem,
    register_app,
    start,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_withdrawing_an_approval_ends_the_apps_tokens_and_asks_again(app, client, mailbox):
    email = unique_email("consent")
    register_and_verify(client, mailbox, email)
    third = register_app(app, public=True)
    verifier, challenge = pkce()
    params = authorize_params(third, challenge, scope="openid email offline_access")
    landed = follow_to_app(client, start(client, params), email)
    tokens = redeem(client, third, query_of(landed.headers["Location"])["code"], verifier).json
    assert client.get("/oauth/userinfo", headers=bearer(tokens["access_token"])).status_code == 200

    own = bearer(login(client, email).json["data"]["token"])
    listed = client.get(f"{API}/consents/", headers=own).json["data"]["consents"]
    assert [(c["client_id"], c["client_name"]) for c in listed] == [(third.client_id, "Acme Notes")]
    assert set(listed[0]["scope"].split()) == {"openid", "email", "offline_access"}

    withdrawn = client.delete(f"{API}/consents/{third.client_id}/", headers=own)
    assert withdrawn.status_code == 200, withdrawn.json
    assert client.get("/oauth/userinfo", headers=bearer(tokens["access_token"])).status_code == 401
    refreshed = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": third.client_id,
        },
    )
    assert refreshed.status_code == 400
    assert refreshed.json["error"] == "invalid_grant"
    assert client.get(f"{API}/consents/", headers=own).json["data"]["consents"] == []
    # The browser session lives on, but the app must ask again.
    again = start(client, authorize_params(third, challenge))
    assert again.headers["Location"].startswith("/consent?")


def test_one_user_cannot_withdraw_another_users_approval(app, client, mailbox):
    owner, other = unique_email("owner"), unique_email("other")
    register_and_verify(client, mailbox, owner)
    register_and_verify(client, mailbox, other)
    third = register_app(app, public=True)
    _, challenge = pkce()
    follow_to_app(client, start(client, authorize_params(third, challenge)), owner)
    theirs = bearer(login(client, other).json["data"]["token"])
    answer = client.delete(f"{API}/consents/{third.client_id}/", headers=theirs)
    assert answer.status_code == 404
    mine = bearer(login(client, owner).json["data"]["token"])
    assert len(client.get(f"{API}/consents/", headers=mine).json["data"]["consents"]) == 1


def test_another_apps_token_is_not_a_key_to_the_users_account(app, client, mailbox):
    # An app the user approved for openid alone must not read their profile through the API,
    # list their other apps or sign them out of one.
    email = unique_email("key")
    register_and_verify(client, mailbox, email)
    good = register_app(app, public=True, name="Good App")
    evil = register_app(app, public=True, name="Evil App")
    for relying in (good, evil):
        verifier, challenge = pkce()
        landed = follow_to_app(client, start(client, authorize_params(relying, challenge)), email)
        code = query_of(landed.headers["Location"])["code"]
        tokens = redeem(client, relying, code, verifier).json
    evil_token = bearer(tokens["access_token"])
    assert client.get(f"{API}/verify-token/", headers=evil_token).status_code == 401
    assert client.get(f"{API}/consents/", headers=evil_token).status_code == 401
    withdrawn = client.delete(f"{API}/consents/{good.client_id}/", headers=evil_token)
    assert withdrawn.status_code == 401
    assert client.post(f"{API}/logout/", headers=evil_token).status_code == 401
    own = bearer(login(client, email).json["data"]["token"])
    assert len(client.get(f"{API}/consents/", headers=own).json["data"]["consents"]) == 2
    # userinfo is where an app reads what the user granted it.
    assert client.get("/oauth/userinfo", headers=evil_token).status_code == 200


def test_an_approval_of_an_app_with_a_mixed_case_legacy_id_can_be_withdrawn(app, client, mailbox):
    """Client ids made before ids became lower-case hex are base64url: the path's route words
    fold to one spelling, the id in it keeps its case."""
    email = unique_email("legacy")
    register_and_verify(client, mailbox, email)
    made = register_app(app, public=True)
    legacy = "LegacyAbCdEf_0123456789-xyZ"
    with app.app_context():
        db.session.execute(
            update(OAuthClient)
            .where(OAuthClient.client_id == made.client_id)
            .values(client_id=legacy)
        )
        commit()
    third = dataclasses.replace(made, client_id=legacy)
    follow_to_app(client, start(client, authorize_params(third, pkce()[1])), email)
    own = bearer(login(client, email).json["data"]["token"])
    listed = client.get(f"{API}/consents/", headers=own).json["data"]["consents"]
    assert [c["client_id"] for c in listed] == [legacy]

    withdrawn = client.delete(f"{API}/consents/{legacy}/", headers=own)
    assert withdrawn.status_code == 200, withdrawn.json
    assert client.get(f"{API}/consents/", headers=own).json["data"]["consents"] == []
    # Another spelling of the id is another id.
    follow_to_app(client, start(client, authorize_params(third, pkce()[1])), email)
    own = bearer(login(client, email).json["data"]["token"])
    assert client.delete(f"{API}/CONSENTS/{legacy.lower()}", headers=own).status_code == 404
    assert client.delete(f"{API}/CONSENTS//{legacy}", headers=own).status_code == 200
