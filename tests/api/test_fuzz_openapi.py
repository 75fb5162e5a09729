"""Schemathesis against the app in-process (WSGI), driven by the OpenAPI document.

Every operation gets bounded, derandomized examples (schema-valid and schema-breaking, plus the
boundary values of Schemathesis' coverage phase); no answer may be a 5xx, have an undocumented
status, media type or header, or break its documented schema, and schema-breaking requests must
be refused. A stateful run follows the document's links: login -> refresh -> refresh/logout.

Not checked: `positive_data_acceptance` (a schema-valid registration is still refused by the
password policy, and a schema-valid login by wrong credentials) and the REST resource checks
(`use_after_free`, `ensure_resource_availability`), which have nothing to look at here.
"""

from __future__ import annotations

import logging
from importlib.resources import files
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.datastructures import Authorization

from idp import transaction
from idp.clock import utcnow
from idp.services.clients import create_client
from tests.conftest import ISSUER
from tests.flows import PASSWORD, register_and_verify, unique_email

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    ignored_auth,
]
FUZZ_SETTINGS = settings(
    max_examples=50,
    derandomize=True,  # the same examples on every run, so CI is reproducible
    database=None,  # nothing is written to .hypothesis/
    deadline=None,
    # The app and log fixtures live for all examples of an operation, on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
STATEFUL_SETTINGS = settings(FUZZ_SETTINGS, max_examples=25, stateful_step_count=6)


def load_schema() -> Any:
    # The package file, which test_openapi.py shows is what the app serves. (Loading it from the
    # app with schemathesis.pytest.from_fixture needs pytest's `Node._nodeid`, gone in 9.2.)
    return schemathesis.openapi.from_path(files("idp.api").joinpath("openapi.json"))


schema = load_schema()


@pytest.fixture
def fuzz_app(make_app: Any) -> Flask:
    """One app per operation; its data builds up over that operation's examples."""
    return make_app()


def settle(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    """Let the mails and look-ups run after the answer finish, and fail if one of them failed.

    Waiting also keeps those threads (the email package draws MIME boundaries from `random`)
    from touching the global random state while Hypothesis draws the next example.
    """
    assert app.extensions["idp.services"].jobs.drain()
    failed = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    caplog.clear()
    assert not failed, failed


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_answers_as_documented(case, fuzz_app, caplog):
    case.call_and_validate(app=fuzz_app, checks=CHECKS)
    settle(fuzz_app, caplog)


@pytest.fixture
def basic_auth(fuzz_app: Flask) -> dict[str, str]:
    with fuzz_app.app_context():
        created = create_client("fuzz", "read write", utcnow(), introspect=True, audiences=[ISSUER])
        transaction.commit()  # the caller owns the commit (a CLI command does)
        credentials = {"username": created.client.client_id, "password": created.client_secret}
    return {"Authorization": Authorization("basic", credentials).to_header()}


@schema.include(path_regex="^/oauth/").parametrize()
@FUZZ_SETTINGS
def test_oauth_operations_with_a_real_client(case, fuzz_app, basic_auth, caplog):
    """Past client authentication: grants, scopes, introspection and revocation answers."""
    case.call_and_validate(app=fuzz_app, headers=basic_auth, checks=CHECKS)
    settle(fuzz_app, caplog)


def test_sessions_statefully(make_app, mailbox, caplog):
    app = make_app()
    email = unique_email("stateful")
    register_and_verify(app.test_client(), mailbox, email)
    sessions = load_schema().include(operation_id=["login", "refreshToken", "logout"])
    # Flows, not input validation (the tests above do that): schema-valid requests only.
    sessions.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE])

    @sessions.hook
    def map_body(context: Any, body: Any) -> Any:
        # Every scenario starts from a real login; refresh and logout get its tokens by the links.
        if context.operation.label == "POST /api/v1/auth/login/":
            return {"email": email, "password": PASSWORD}
        return body

    class Sessions(sessions.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"app": app}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)
            settle(app, caplog)

    Sessions.run(settings=STATEFUL_SETTINGS)
