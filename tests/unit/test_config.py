import pytest

from idp.config import load_settings
from idp.errors import ConfigurationError


def test_defaults(tmp_path):
    settings = load_settings(str(tmp_path), environ={})
    assert settings["IDP_ISSUER"] == "http://localhost:5000"
    assert settings["IDP_AUDIENCE"] == settings["IDP_ISSUER"]
    assert settings["IDP_FRONTEND_URL"] == settings["IDP_ISSUER"]
    assert settings["IDP_ACCESS_TOKEN_TTL"] == 3600
    assert settings["IDP_REFRESH_TOKEN_TTL"] == 14 * 24 * 3600
    assert settings["IDP_TRUSTED_PROXIES"] == 0
    assert settings["IDP_DATABASE_URL"].startswith("sqlite:///")
    # The development secret is generated once and kept.
    assert settings["IDP_SECRET_KEY"] == load_settings(str(tmp_path), environ={})["IDP_SECRET_KEY"]
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_environment_is_read(tmp_path):
    settings = load_settings(
        str(tmp_path),
        environ={"IDP_ISSUER": "https://id.example.com/", "IDP_ACCESS_TOKEN_TTL": "600"},
    )
    assert settings["IDP_ISSUER"] == "https://id.example.com"
    assert settings["IDP_ACCESS_TOKEN_TTL"] == 600


@pytest.mark.parametrize(
    "environ",
    [
        {"IDP_TOKEN_LEEWAY": "30"},
        {"IDP_ACCESS_TOKEN_TTL": "ten"},
        {"IDP_MAIL_USE_TLS": "maybe"},
        {"IDP_ISSUER": "idp.example.com"},
        {"IDP_REFRESH_REUSE_GRACE": "-1"},
    ],
)
def test_unsafe_or_malformed_settings_are_refused(tmp_path, environ):
    with pytest.raises(ConfigurationError):
        load_settings(str(tmp_path), environ=environ)
