"""IDP_ENV=production refuses the development conveniences that would be unsafe live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from idp import create_app
from idp.config import load_settings
from idp.errors import ConfigurationError
from idp.extensions import db

PRODUCTION = {
    "IDP_ENV": "production",
    "IDP_SECRET_KEY": "x" * 48,
    "IDP_ISSUER": "https://id.example.com",
    "IDP_MAIL_SERVER": "smtp.example.com",
    "IDP_REDIS_URL": "redis://127.0.0.1:6379/0",
}


def without(name: str) -> dict[str, str]:
    return {key: value for key, value in PRODUCTION.items() if key != name}


def test_a_complete_production_environment_is_accepted(tmp_path):
    settings = load_settings(str(tmp_path), environ=PRODUCTION)
    assert settings.env == "production"
    assert not (tmp_path / "secret_key").exists()


def test_development_is_the_default_and_keeps_its_conveniences(tmp_path):
    settings = load_settings(str(tmp_path), environ={})
    assert settings.env == "development"
    assert (tmp_path / "secret_key").exists()


@pytest.mark.parametrize("value", ["prod", "staging", "1"])
def test_an_unknown_environment_is_refused(tmp_path, value):
    with pytest.raises(ConfigurationError, match="IDP_ENV"):
        load_settings(str(tmp_path), environ={"IDP_ENV": value})


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        (without("IDP_SECRET_KEY"), "IDP_SECRET_KEY"),
        ({**PRODUCTION, "IDP_SECRET_KEY": "short"}, "IDP_SECRET_KEY"),
        ({**PRODUCTION, "IDP_ISSUER": "http://id.example.com"}, "IDP_ISSUER"),
        ({**PRODUCTION, "IDP_ISSUER": "http://10.0.0.5:5000"}, "IDP_ISSUER"),
        ({**PRODUCTION, "IDP_FRONTEND_URL": "http://app.example.com"}, "IDP_FRONTEND_URL"),
        (without("IDP_MAIL_SERVER"), "IDP_MAIL_SERVER"),
        (without("IDP_REDIS_URL"), "IDP_REDIS_URL"),
        ({**without("IDP_REDIS_URL"), "IDP_RATELIMIT_ENABLED": "true"}, "IDP_REDIS_URL"),
    ],
    ids=[
        "no-secret",
        "short-secret",
        "http-issuer",
        "http-issuer-ip",
        "http-frontend",
        "no-mail-server",
        "memory-limiter",
        "memory-limiter-explicit",
    ],
)
def test_unsafe_production_settings_are_refused(tmp_path, environ, variable):
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(str(tmp_path), environ=environ)
    # The refusal comes before the development secret could be generated as a fallback.
    assert not (tmp_path / "secret_key").exists()


def test_overrides_count_as_explicit_settings(tmp_path):
    settings = load_settings(
        str(tmp_path), environ=without("IDP_SECRET_KEY"), overrides={"IDP_SECRET_KEY": "y" * 40}
    )
    assert settings.secret_key == "y" * 40


@pytest.mark.parametrize(
    "issuer", ["http://localhost:5000", "http://127.0.0.1:8000", "http://[::1]:5000"]
)
def test_plain_http_is_allowed_for_the_local_machine(tmp_path, issuer):
    settings = load_settings(str(tmp_path), environ={**PRODUCTION, "IDP_ISSUER": issuer})
    assert settings.issuer == issuer


@pytest.mark.parametrize(
    "extra",
    [{"IDP_ALLOW_MEMORY_RATELIMIT": "true"}, {"IDP_RATELIMIT_ENABLED": "false"}],
    ids=["single-process", "limits-off"],
)
def test_memory_counters_can_be_accepted_explicitly(tmp_path, extra):
    settings = load_settings(str(tmp_path), environ={**without("IDP_REDIS_URL"), **extra})
    assert settings.redis_url is None


# -- the signing key: create_app ---------------------------------------------------------------


@pytest.fixture
def production_overrides(tmp_path: Path) -> dict[str, Any]:
    return {
        **PRODUCTION,
        "IDP_DATABASE_URL": f"sqlite:///{tmp_path / 'idp.sqlite3'}",
        "IDP_KEYS_DIR": str(tmp_path / "keys"),
        "IDP_REDIS_URL": None,
        "IDP_ALLOW_MEMORY_RATELIMIT": True,
    }


def dispose(app: Any) -> None:
    with app.app_context():
        db.engine.dispose()


def test_production_does_not_create_the_first_key_and_refuses_to_serve(
    production_overrides, tmp_path, monkeypatch
):
    monkeypatch.delenv("FLASK_RUN_FROM_CLI", raising=False)
    with pytest.raises(ConfigurationError, match="IDP_KEYS_DIR"):
        create_app(production_overrides)
    assert not (tmp_path / "keys").exists()


def test_the_flask_command_can_create_the_first_production_key(
    production_overrides, tmp_path, monkeypatch
):
    # What `flask --app wsgi keys rotate` does: Flask marks the process, then builds the app.
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")
    admin = create_app(production_overrides)
    result = admin.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    kid = result.output.split()[0]
    dispose(admin)

    monkeypatch.delenv("FLASK_RUN_FROM_CLI")
    server = create_app(production_overrides)
    assert server.extensions["idp.services"].keys.signing_key()[0] == kid
    dispose(server)
