"""Request bodies a hostile or careless client sends: chunked, oversized, ambiguous."""

import io

import pytest

from idp import transaction
from tests.flows import API

# What gunicorn hands the application for `Transfer-Encoding: chunked`: no Content-Length, a
# stream the server terminates.
CHUNKED = {"CONTENT_LENGTH": "", "wsgi.input_terminated": True}


def _chunked_post(client, path, body: bytes, content_type: str):
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        content_type=content_type,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides=CHUNKED,
    )


def test_a_small_chunked_body_is_read_whole(client):
    body = b'{"email": "nobody@example.com", "password": "Wrong-Pass-1"}'
    response = _chunked_post(client, f"{API}/login/", body, "application/json")
    assert response.status_code == 401
    assert response.json["code"] == "invalid_credentials"


def test_a_chunked_json_body_over_the_limit_is_413_not_its_first_bytes(client):
    # The first 64 KiB are a complete JSON object; a body cut at the limit would be accepted.
    head = b'{"email": "nobody@example.com", "password": "Wrong-Pass-1"}'
    body = head + b" " * (65536 - len(head)) + b"trailing bytes past the limit"
    response = _chunked_post(client, f"{API}/login/", body, "application/json")
    assert response.status_code == 413
    assert response.json["code"] == "payload_too_large"


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
def test_a_chunked_form_body_over_the_limit_is_413(client, path):
    body = b"grant_type=client_credentials&pad=" + b"x" * 70_000
    response = _chunked_post(client, path, body, "application/x-www-form-urlencoded")
    assert response.status_code == 413
    assert response.json["error"] == "payload_too_large"


LOGIN_JSON = '{"email": "nobody@example.com", "password": "Wrong-Pass-1"}'


@pytest.mark.parametrize(
    "body",
    [
        # Which password counts? A proxy or WAF may read the first, Python the last.
        '{"email": "nobody@example.com", "password": "x", "password": "Wrong-Pass-1"}',
        '{"email": "nobody@example.com", "password": "Wrong-Pass-1", "x": {"a": 1, "a": 2}}',
        '{"email": "nobody@example.com", "password": "Wrong-Pass-1", "x": NaN}',
        '{"email": "nobody@example.com", "password": "Wrong-Pass-1", "x": -Infinity}',
    ],
)
def test_ambiguous_or_non_standard_json_is_malformed(client, body):
    response = client.post(f"{API}/login/", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["code"] == "malformed_request"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_json_that_is_not_utf8_is_malformed(client, encoding):
    response = client.post(
        f"{API}/login/", data=LOGIN_JSON.encode(encoding), content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json["code"] == "malformed_request"


@pytest.mark.parametrize("charset", ["utf-16", "latin-1", "bogus"])
def test_a_charset_other_than_utf8_is_415(client, charset):
    response = client.post(
        f"{API}/login/", data=LOGIN_JSON, content_type=f"application/json; charset={charset}"
    )
    assert response.status_code == 415
    assert response.json["code"] == "unsupported_media_type"


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8"])
def test_utf8_json_with_or_without_bom_is_read(client, charset):
    for data in (LOGIN_JSON.encode(), b"\xef\xbb\xbf" + LOGIN_JSON.encode()):
        response = client.post(
            f"{API}/login/", data=data, content_type=f"application/json; charset={charset}"
        )
        assert response.status_code == 401
        assert response.json["code"] == "invalid_credentials"


def test_a_compressed_body_is_415_naming_the_accepted_coding(client):
    import gzip

    response = client.post(
        f"{API}/login/",
        data=gzip.compress(LOGIN_JSON.encode()),
        content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    )
    assert response.status_code == 415
    assert response.json["code"] == "unsupported_media_type"
    assert response.headers["Accept-Encoding"] == "identity"


def test_two_client_authentication_methods_in_one_request_are_refused(app, client):
    from idp.clock import utcnow
    from idp.services.clients import create_client

    with app.app_context():
        first, second = (create_client(name, "read", utcnow()) for name in ("one", "two"))
        transaction.commit()  # the caller owns the commit (a CLI command does)
        basic = (first.client.client_id, first.client_secret)
        form = {
            "grant_type": "client_credentials",
            "client_id": second.client.client_id,
            "client_secret": second.client_secret,
        }
    response = client.post("/oauth/token", data=form, auth=basic)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert "access_token" not in response.json
