from tests.flows import API, logged_in_user, verify_token


def test_a_verified_user_logs_in_and_the_token_verifies(client, mailbox):
    user = logged_in_user(client, mailbox)
    response = verify_token(client, user.token)
    assert response.status_code == 200
    assert response.json["data"]["user"]["id"] == user.user_id
    assert client.get(f"{API}/verify-token/").status_code == 401
