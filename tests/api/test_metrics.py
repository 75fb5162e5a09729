"""GET /metrics through the test client: who may read it, and that it counts what happened.

The counters live in this test process for its whole run, so every check compares a scrape
taken before with one taken after. Multiprocess counting under gunicorn is
tests/e2e/test_metrics.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from idp import metrics, transaction
from idp.clock import utcnow
from idp.extensions import db
from idp.models import OutboxMail
from idp.models.outbox import PENDING
from idp.services.keys import KeyStore
from tests.api.test_oauth import REVOKE, Credentials, client_token, new_client, refresh
from tests.flows import API, logged_in_user, login, register, unique_email
from tests.support import free_port

METRICS_TOKEN = "metrics-token-for-tests-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {METRICS_TOKEN}"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: FlaskClient) -> Samples:
    """Every sample of one scrape, keyed by (name, labels)."""
    response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 200, response.get_data(as_text=True)
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _labels), v in samples.items() if n == name)


@pytest.fixture
def app(make_app: Any) -> Flask:
    return make_app(IDP_METRICS_TOKEN=METRICS_TOKEN)


# -- who may read it ---------------------------------------------------------------------------


def test_without_a_metrics_setting_there_is_no_metrics_endpoint(make_app):
    client = make_app().test_client()
    response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 404
    assert response.json["error"] == "not_found"


def test_metrics_answer_prometheus_text_to_the_token_only(client):
    response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 200
    assert response.content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert "# TYPE idp_http_requests_total counter" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, "Bearer"),
        ({"Authorization": "Bearer wrong-token-of-the-same-kind-0123456789abc"}, "invalid_token"),
        ({"Authorization": f"Bearer {METRICS_TOKEN}x"}, "invalid_token"),
        ({"Authorization": f"Bearer {METRICS_TOKEN[:-1]}"}, "invalid_token"),
        ({"Authorization": f"Basic {METRICS_TOKEN}"}, "invalid_token"),
        ({"Authorization": f"Bearer {METRICS_TOKEN} {METRICS_TOKEN}"}, "invalid_token"),
    ],
)
def test_metrics_refuse_anyone_else_with_a_challenge(client, headers, challenge):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert challenge in response.headers["WWW-Authenticate"]
    assert "idp_" not in response.get_data(as_text=True)


def test_the_metrics_token_is_not_an_access_token(client, mailbox):
    user = logged_in_user(client, mailbox)
    response = client.get("/metrics", headers=user.auth)
    assert response.status_code == 401
    assert client.get(f"{API}/verify-token/", headers=BEARER).status_code == 401


# -- requests ----------------------------------------------------------------------------------


def test_requests_are_counted_by_route_template_method_and_status(client):
    before = scrape(client)
    client.get(f"{API}/verify-token/", headers={"Authorization": "Bearer nope"})
    client.get(f"{API}/verify-token/", headers={"Authorization": "Bearer nope"})
    client.get("/no/such/path/12345")
    client.get("/another/unknown/path")
    client.open("/healthz", method="BREW")
    client.delete("/api/v1/auth/consents/some-client-id/")
    after = scrape(client)

    requests = "idp_http_requests_total"
    route = "/api/v1/auth/verify-token/"
    assert grew(before, after, requests, route=route, method="GET", status="401") == 2
    # Unknown paths and invented methods share series: a client cannot add any.
    assert grew(before, after, requests, route="unmatched", method="GET", status="404") == 2
    assert grew(before, after, requests, route="unmatched", method="other", status="405") == 1
    # A path with a variable counts under its template, not its value.
    consent = "/api/v1/auth/consents/<client_id>/"
    assert grew(before, after, requests, route=consent, method="DELETE", status="401") == 1
    assert not any("some-client-id" in str(labels) for _name, labels in after)
    histogram = "idp_http_request_duration_seconds_count"
    assert grew(before, after, histogram, route=route, method="GET") == 2
    assert value(after, "idp_http_request_duration_seconds_sum", route=route, method="GET") > 0


# -- security events ---------------------------------------------------------------------------


def test_login_outcomes_are_counted(client, mailbox):
    user = logged_in_user(client, mailbox)
    unverified = unique_email("unverified")
    assert register(client, unverified).status_code == 201
    before = scrape(client)
    assert login(client, user.email).status_code == 200
    assert login(client, user.email, "Wrong-Horse-1").status_code == 401
    assert login(client, unique_email("nobody")).status_code == 401
    assert login(client, unverified).status_code == 403
    after = scrape(client)
    logins = "idp_logins_total"
    assert grew(before, after, logins, outcome="success") == 1
    assert grew(before, after, logins, outcome="bad_credentials") == 2
    assert grew(before, after, logins, outcome="unverified") == 1
    assert grew(before, after, logins, outcome="throttled") == 0
    assert grew(before, after, "idp_tokens_issued_total", grant="password") == 1


def test_throttled_logins_and_route_limits_are_counted_by_limit_name(make_app, mailbox):
    client = make_app(
        IDP_METRICS_TOKEN=METRICS_TOKEN,
        IDP_RATELIMIT_ENABLED=True,
        IDP_RATELIMIT_AUTH="4 per minute",
        IDP_LOGIN_FAILURES_PER_SOURCE="2 per 15 minutes",
    ).test_client()
    before = scrape(client)
    email = unique_email("target")
    answers = [login(client, email, "Wrong-Horse-1").status_code for _ in range(5)]
    after = scrape(client)
    # Two failures, then the per-source wall (429), then the per-address route limit (429).
    assert answers == [401, 401, 429, 429, 429]
    assert grew(before, after, "idp_logins_total", outcome="bad_credentials") == 2
    assert grew(before, after, "idp_logins_total", outcome="throttled") == 3
    limits = "idp_rate_limit_refusals_total"
    assert grew(before, after, limits, limit="user.login_source") == 2
    assert grew(before, after, limits, limit="ip.login") == 1


def test_tokens_reuse_and_revocations_are_counted(app, client, mailbox):
    user = logged_in_user(client, mailbox)
    service = new_client(app)
    before = scrape(client)

    rotated = refresh(client, user.refresh_token)
    assert rotated.status_code == 200
    assert refresh(client, user.refresh_token).status_code == 400  # reuse: the family ends
    issued = client_token(client, service).json["access_token"]
    assert client.post(REVOKE, data={"token": issued}, auth=service.basic).status_code == 200
    wrong = Credentials(service.client_id, "not-the-secret")
    assert client_token(client, wrong).status_code == 401
    other = logged_in_user(client, mailbox)
    assert client.post(f"{API}/logout/", headers=other.auth).status_code == 200
    after = scrape(client)

    tokens = "idp_tokens_issued_total"
    assert grew(before, after, tokens, grant="refresh_token") == 1
    assert grew(before, after, tokens, grant="client_credentials") == 1
    assert grew(before, after, tokens, grant="password") == 1
    assert grew(before, after, "idp_refresh_token_reuse_detected_total") == 1
    revocations = "idp_revocations_total"
    assert grew(before, after, revocations, reason="refresh_token_reuse") == 1
    assert grew(before, after, revocations, reason="revocation_endpoint") == 1
    assert grew(before, after, revocations, reason="logout") == 1
    failures = "idp_client_auth_failures_total"
    assert grew(before, after, failures, reason="bad_secret") == 1


# -- state read at scrape time -----------------------------------------------------------------


def test_the_outbox_is_shown_by_status_with_the_oldest_waiting_age(app, client):
    with app.app_context():
        now = utcnow()
        db.session.add(
            OutboxMail(
                message="verify_email",
                recipient="waiting@example.com",
                status=PENDING,
                attempts=1,
                next_attempt_at=now + timedelta(hours=1),
                created_at=now - timedelta(minutes=10),
            )
        )
        transaction.commit()
        counts = dict(
            db.session.execute(
                text("SELECT status, count(*) FROM mail_outbox GROUP BY status")
            ).all()
        )
    samples = scrape(client)
    for status in ("requested", "pending", "sending", "sent", "dead", "dropped"):
        shown = value(samples, "idp_mail_outbox_messages", status=status)
        assert shown == counts.get(status, 0), status
    age = value(samples, "idp_mail_outbox_oldest_pending_age_seconds")
    assert 600 <= age < 900


def test_the_signing_keys_are_shown_by_count_and_age(app, client):
    samples = scrape(client)
    published = len(json.loads(client.get("/.well-known/jwks.json").data)["keys"])
    assert value(samples, "idp_signing_keys_published") == published >= 1
    keys = KeyStore(app.config["IDP"].keys_dir)
    active = next(info for info in keys.list_keys() if info.status == "active")
    age = (utcnow() - datetime.fromisoformat(active.created_at)).total_seconds()
    assert abs(value(samples, "idp_signing_key_age_seconds") - age) < 60


# -- failures of what idp depends on -----------------------------------------------------------


def test_an_unreachable_database_is_counted_and_a_taken_address_is_not(make_app, client):
    taken = unique_email("taken")
    assert register(client, taken).status_code == 201
    before = scrape(client)
    assert register(client, taken).status_code == 409  # a constraint answered: no error
    outage = make_app(
        IDP_METRICS_TOKEN=METRICS_TOKEN,
        IDP_DATABASE_URL=f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/gone",
    ).test_client()
    assert login(outage, taken).status_code == 503
    after = scrape(client)
    errors = "idp_database_errors_total"
    assert grew(before, after, errors, kind="OperationalError") >= 1
    assert total(after, errors) - total(before, errors) == grew(
        before, after, errors, kind="OperationalError"
    )
    assert not any(labels == frozenset({("kind", "IntegrityError")}) for _n, labels in after)


def test_a_count_that_fails_never_fails_the_request(client, mailbox, monkeypatch):
    user = logged_in_user(client, mailbox)

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(metrics.HTTP_REQUESTS, "labels", broken)
    monkeypatch.setattr(metrics.LOGINS, "labels", broken)
    monkeypatch.setattr(metrics.TOKENS_ISSUED, "labels", broken)
    signed_in = login(client, user.email)
    assert signed_in.status_code == 200, signed_in.json
    assert client.get(f"{API}/verify-token/", headers=user.auth).status_code == 200
    monkeypatch.undo()
    fresh = signed_in.json["data"]["token"]  # issued and committed despite the failed counts
    answer = client.get(f"{API}/verify-token/", headers={"Authorization": f"Bearer {fresh}"})
    assert answer.status_code == 200


def test_redis_errors_are_counted_where_idp_carried_on_without_it(make_app, mailbox):
    client = make_app(
        IDP_METRICS_TOKEN=METRICS_TOKEN,
        IDP_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        IDP_RATELIMIT_ENABLED=True,
    ).test_client()
    before = scrape(client)
    user = logged_in_user(client, mailbox)
    assert client.post(f"{API}/logout/", headers=user.auth).status_code == 200
    after = scrape(client)
    errors = "idp_redis_errors_total"
    assert grew(before, after, errors, component="revocation_cache") >= 1
    assert grew(before, after, errors, component="rate_limits") >= 1


def test_the_readme_names_every_metric_served(client):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    response = client.get("/metrics", headers=BEARER).get_data(as_text=True)
    families = {
        f.name for f in text_string_to_metric_families(response) if f.name.startswith("idp_")
    }
    assert len(families) >= 15
    for name in families:
        suffix = "_total" if f"{name}_total" in response else ""
        assert f"`{name}{suffix}`" in readme, name
