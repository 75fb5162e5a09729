import pytest
from flask import session

from tests.flows import API, PASSWORD


@pytest.mark.parametrize(
    "path",
    [
        f"{API}/login/",
        f"{API}/login",
        "/api/v1/auth//login/",
        "/API/v1/Auth/LOGIN/",
    ],
)
def test_every_spelling_of_a_path_reaches_the_same_view(client, path):
    response = client.post(path, json={"email": "nobody@example.com", "password": "Wrong-1a"})
    assert response.status_code == 401
    assert response.json["code"] == "invalid_credentials"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", f"{API}/nothing-here/", 404, "not_found"),
        ("get", f"{API}/login/", 405, "method_not_allowed"),
        ("delete", f"{API}/register/", 405, "method_not_allowed"),
        ("post", f"{API}/verify-token/", 405, "method_not_allowed"),
    ],
)
def test_routing_errors_use_the_envelope(client, method, path, status, code):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.json == {
        "success": False,
        "message": response.json["message"],
        "code": code,
    }
    assert isinstance(response.json["message"], str) and response.json["message"]


def test_an_oversized_body_is_413_in_the_envelope(client):
    response = client.post(
        f"{API}/register/", data="{" + " " * 70_000 + "}", content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json["code"] == "payload_too_large"


def test_an_unexpected_error_is_a_500_envelope_without_details(app, client, monkeypatch):
    from idp.services.accounts import AccountService

    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(AccountService, "request_password_reset", explode)
    response = client.post(f"{API}/password-reset/", json={"email": "a@example.com"})
    assert response.status_code == 500
    assert response.json["success"] is False
    assert "secret internal detail" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert response.headers["X-Request-ID"]


def test_security_headers_on_every_answer(client):
    for response in (
        client.get(f"{API}/verify-token/"),
        client.get("/.well-known/jwks.json"),
        client.get("/nowhere"),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Frame-Options"] == "DENY"
    assert client.get(f"{API}/verify-token/").headers["Cache-Control"] == "no-store"


def test_unauthenticated_answers_say_how_to_authenticate(client):
    response = client.get(f"{API}/verify-token/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    bad = client.get(f"{API}/verify-token/", headers={"Authorization": "Bearer abc.def.ghi"})
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]


def test_forwarded_for_is_ignored_unless_proxies_are_trusted(make_app):
    from flask import request

    def address_app(**overrides):
        app = make_app(**overrides)
        app.add_url_rule("/whoami", "whoami", lambda: {"addr": request.remote_addr})
        return app.test_client()

    spoofed = {"X-Forwarded-For": "203.0.113.9"}
    direct = address_app().get("/whoami", headers=spoofed, environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert direct.json["addr"] == "10.0.0.1"
    proxied = address_app(IDP_TRUSTED_PROXIES=1).get(
        "/whoami", headers=spoofed, environ_base={"REMOTE_ADDR": "10.0.0.1"}
    )
    assert proxied.json["addr"] == "203.0.113.9"


def test_cors_allows_listed_origins_only_and_never_credentials(make_app):
    client = make_app(IDP_CORS_ORIGINS="https://app.example.com").test_client()
    preflight = client.options(
        f"{API}/login/",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Access-Control-Allow-Credentials" not in preflight.headers
    evil = client.post(f"{API}/login/", json={}, headers={"Origin": "https://evil.example.net"})
    assert "Access-Control-Allow-Origin" not in evil.headers
    public = client.get("/.well-known/jwks.json", headers={"Origin": "https://evil.example.net"})
    assert public.headers["Access-Control-Allow-Origin"] == "*"


def test_cors_answers_vary_on_origin_and_offer_only_the_methods_we_serve(make_app):
    client = make_app(IDP_CORS_ORIGINS="https://a.example.com,https://b.example.com").test_client()
    for origin in ("https://a.example.com", "https://evil.example.net"):
        # The public, cacheable document too: a shared cache must not serve one origin's
        # answer (with or without Access-Control-Allow-Origin) to another.
        for path in (f"{API}/openapi.json", f"{API}/login/"):
            answer = client.get(path, headers={"Origin": origin})
            assert "Origin" in answer.headers.get("Vary", ""), (path, origin)
    preflight = client.options(
        f"{API}/login/",
        headers={"Origin": "https://a.example.com", "Access-Control-Request-Method": "POST"},
    )
    offered = {m.strip() for m in preflight.headers["Access-Control-Allow-Methods"].split(",")}
    # DELETE: a frontend withdraws an approval (/api/v1/auth/consents/{client_id}/).
    assert offered == {"GET", "HEAD", "POST", "DELETE"}


def test_without_an_allowlist_no_origin_is_allowed(client):
    response = client.post(f"{API}/login/", json={}, headers={"Origin": "https://app.example.com"})
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("value", ["*", "https://*.example.com", "app.example.com", "ftp://x"])
def test_a_wildcard_or_malformed_origin_is_refused_at_start(make_app, value):
    from idp.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        make_app(IDP_CORS_ORIGINS=value)


def test_hsts_only_when_the_issuer_is_https(make_app):
    plain = make_app().test_client().get("/.well-known/jwks.json")
    assert "Strict-Transport-Security" not in plain.headers
    secure = make_app(IDP_ISSUER="https://id.example.com").test_client()
    assert (
        "max-age=31536000"
        in secure.get("/.well-known/jwks.json").headers["Strict-Transport-Security"]
    )


def test_a_form_post_changes_nothing(app, client):
    from sqlalchemy import func, select

    from idp.extensions import db
    from idp.models import User

    response = client.post(
        f"{API}/register/",
        data={
            "email": "csrf@example.com",
            "password": PASSWORD,
            "first_name": "A",
            "last_name": "B",
        },
    )
    assert response.status_code == 415
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.parametrize("body", ["[" * 5000, '{"email":' * 5000], ids=["arrays", "objects"])
def test_json_nested_deeper_than_the_parser_goes_is_malformed_not_a_server_error(client, body):
    response = client.post(f"{API}/login/", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["code"] == "malformed_request"


def test_there_is_no_cookie_session(app, client):
    """Bearer tokens only: no answer sets a cookie, and nothing can be written to a session."""

    @app.get("/session-writer")
    def session_writer():
        session["user"] = "someone"
        return "written"

    response = client.get("/session-writer")
    assert response.status_code == 500
    assert "Set-Cookie" not in response.headers
    for answer in (client.get("/healthz"), client.get("/api/v1/auth/verify-token/")):
        assert "Set-Cookie" not in answer.headers


def test_a_browser_app_can_read_why_and_when_from_refusals(make_app):
    """Retry-After (429) and WWW-Authenticate (401) are not CORS-safelisted: unexposed, a page
    sees the status but not when to retry or why its token was refused."""
    origin = "https://app.example.com"
    client = make_app(IDP_CORS_ORIGINS=origin, IDP_RATELIMIT_ENABLED=True).test_client()
    refused = client.get(
        f"{API}/verify-token/", headers={"Origin": origin, "Authorization": "Bearer abc"}
    )
    assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers
    answers = [
        client.post(
            f"{API}/login/",
            json={"email": "a@example.com", "password": PASSWORD},
            headers={"Origin": origin},
        )
        for _ in range(6)  # five a minute per address
    ]
    limited = answers[-1]
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    for answer in (refused, limited):
        exposed = {
            h.strip().lower() for h in answer.headers["Access-Control-Expose-Headers"].split(",")
        }
        assert {"retry-after", "www-authenticate", "x-request-id"} <= exposed
