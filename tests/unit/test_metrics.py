"""What each audit event adds to the metrics (idp.metrics.observe_audit)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from idp import metrics


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("event", "outcome", "fields", "name", "labels"),
    [
        ("login.success", "success", {}, "idp_logins_total", {"outcome": "success"}),
        ("browser_session.started", "success", {}, "idp_logins_total", {"outcome": "success"}),
        (
            "login.failure",
            "failure",
            {"reason": "password_changed"},
            "idp_logins_total",
            {"outcome": "bad_credentials"},
        ),
        (
            "login.failure",
            "denied",
            {"reason": "disabled"},
            "idp_logins_total",
            {"outcome": "disabled"},
        ),
        (
            "login.failure",
            "failure",
            {"reason": "bad_password", "under_attack": True},
            "idp_logins_total",
            {"outcome": "throttled"},
        ),
        (
            "login.failure",
            "failure",
            {"reason": "bad_password", "under_attack": True},
            "idp_rate_limit_refusals_total",
            {"limit": "user.login"},
        ),
        (
            "authorization.code_redeemed",
            "success",
            {},
            "idp_tokens_issued_total",
            {"grant": "authorization_code"},
        ),
        (
            "authorization.code_reused",
            "denied",
            {},
            "idp_authorization_code_reuse_detected_total",
            {},
        ),
        (
            "authorization.code_reused",
            "denied",
            {},
            "idp_revocations_total",
            {"reason": "authorization_code_reuse"},
        ),
        (
            "consent.withdrawn",
            "success",
            {},
            "idp_revocations_total",
            {"reason": "consent_withdrawn"},
        ),
        (
            "password_reset.confirmed",
            "success",
            {},
            "idp_revocations_total",
            {"reason": "password_reset"},
        ),
        (
            "browser_session.ended",
            "success",
            {"reason": "signed_out"},
            "idp_revocations_total",
            {"reason": "browser_sign_out"},
        ),
        (
            "client.auth_failure",
            "failure",
            {"reason": "unknown_client"},
            "idp_client_auth_failures_total",
            {"reason": "unknown_client"},
        ),
    ],
)
def test_an_audit_event_counts_once_where_it_belongs(event, outcome, fields, name, labels):
    before = sample(name, **labels)
    metrics.observe_audit(event, outcome, fields)
    assert sample(name, **labels) - before == 1


@pytest.mark.parametrize(
    ("event", "outcome", "fields"),
    [
        ("session.refresh", "failure", {"reason": "expired"}),
        ("session.logout", "failure", {"reason": "token_mismatch"}),
        ("browser_session.ended", "success", {"reason": "replaced"}),
        ("user.register", "success", {}),
    ],
)
def test_a_refusal_or_a_non_event_issues_and_revokes_nothing(event, outcome, fields):
    names = ("idp_tokens_issued_total", "idp_revocations_total", "idp_logins_total")

    def totals() -> list[float]:
        return [
            sum(s.value for f in REGISTRY.collect() for s in f.samples if s.name == name)
            for name in names
        ]

    before = totals()
    metrics.observe_audit(event, outcome, fields)
    assert totals() == before
