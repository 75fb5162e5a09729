import dataclasses
import subprocess
import sys
import time

import pytest

from idp.config import load_settings
from idp.errors import ConfigurationError


def test_defaults(tmp_path):
    settings = load_settings(str(tmp_path), environ={})
    assert settings.issuer == "http://localhost:5000"
    assert settings.audience == settings.issuer
    assert settings.frontend_url == settings.issuer
    assert settings.access_token_ttl == 3600
    assert settings.refresh_token_ttl == 14 * 24 * 3600
    assert settings.trusted_proxies == 0
    assert settings.database_url.startswith("sqlite:///")
    # The development secret is generated once and kept.
    assert settings.secret_key == load_settings(str(tmp_path), environ={}).secret_key
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_environment_is_read(tmp_path):
    settings = load_settings(
        str(tmp_path),
        environ={"IDP_ISSUER": "https://id.example.com/", "IDP_ACCESS_TOKEN_TTL": "600"},
    )
    assert settings.issuer == "https://id.example.com"
    assert settings.access_token_ttl == 600


@pytest.mark.parametrize(
    "environ",
    [
        {"IDP_TOKEN_LEEWAY": "30"},
        {"IDP_ACCESS_TOKEN_TTL": "ten"},
        {"IDP_MAIL_USE_TLS": "maybe"},
        {"IDP_ISSUER": "idp.example.com"},
        {"IDP_REFRESH_REUSE_GRACE": "-1"},
        {"IDP_MAILS_PER_ADDRESS": "five a day"},
        {"IDP_LOGIN_FAILURES_PER_SOURCE": "10 per fortnight"},
        {"IDP_IPV6_PREFIX_LENGTH": "16"},  # a /16 would put whole providers in one budget
        {"IDP_IPV6_PREFIX_LENGTH": "129"},
    ],
)
def test_unsafe_or_malformed_settings_are_refused(tmp_path, environ):
    with pytest.raises(ConfigurationError):
        load_settings(str(tmp_path), environ=environ)


# Each process waits for a common start, then makes the secret of many fresh folders in turn:
# the processes reach each folder at about the same moment.
_RACER = """
import sys, time
from pathlib import Path
from idp.config import load_settings
root, start, count = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
for n in range(count):
    try:
        print(load_settings(str(root / str(n)), environ={}).secret_key)
    except Exception as exc:
        print(f"error {type(exc).__name__}")
"""


def test_processes_starting_together_all_read_one_whole_secret(tmp_path):
    processes, folders = 4, 60
    start = time.time() + 3.0  # after every interpreter has imported idp
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(tmp_path), str(start), str(folders)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    outputs = [racer.communicate(timeout=60)[0].split() for racer in racers]
    assert all(len(lines) == folders for lines in outputs), outputs
    for n in range(folders):
        seen = {lines[n] for lines in outputs}
        (secret,) = seen  # every process read the same secret
        assert len(secret) >= 32, seen
        assert (tmp_path / str(n) / "secret_key").read_text() == secret
        left = sorted(p.name for p in (tmp_path / str(n)).iterdir())
        assert left == [".secret_key.lock", "secret_key"]  # no temporary file left behind


@pytest.mark.parametrize("content", ["", "\n", "short"])
def test_an_empty_or_cut_development_secret_is_refused(tmp_path, content):
    (tmp_path / "secret_key").write_text(content)
    with pytest.raises(ConfigurationError, match="no usable secret"):
        load_settings(str(tmp_path), environ={})


def test_settings_are_typed_read_as_attributes_and_frozen(tmp_path):
    settings = load_settings(
        str(tmp_path),
        environ={
            "IDP_RATELIMIT_ENABLED": "no",
            "IDP_CORS_ORIGINS": "https://a.test, https://b.test",
        },
        overrides={"IDP_MAIL_PORT": "2525", "IDP_ACCESS_TOKEN_TTL": 900},
    )
    assert settings.ratelimit_enabled is False
    assert settings.cors_origins == ("https://a.test", "https://b.test")
    assert settings.mail_port == 2525  # a string override is parsed like the environment
    assert settings.access_token_ttl == 900
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.issuer = "https://elsewhere.test"  # type: ignore[misc]


def test_an_unknown_override_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="unknown settings: IDP_ISUER"):
        load_settings(str(tmp_path), environ={}, overrides={"IDP_ISUER": "https://id.test"})


def test_bounds_are_checked_for_overrides_too(tmp_path):
    with pytest.raises(ConfigurationError, match="IDP_TOKEN_LEEWAY must be between 0 and 5"):
        load_settings(str(tmp_path), environ={}, overrides={"IDP_TOKEN_LEEWAY": 30})


def test_metrics_are_off_unless_a_token_or_a_port_is_set(tmp_path):
    settings = load_settings(str(tmp_path), environ={})
    assert settings.metrics_token is None
    assert settings.metrics_bind is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("9464", ("127.0.0.1", 9464)),
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("127.0.0.2:9100", ("127.0.0.2", 9100)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:9464", ("localhost", 9464)),
    ],
)
def test_the_metrics_port_takes_loopback_addresses(tmp_path, given, expected):
    settings = load_settings(str(tmp_path), environ={"IDP_METRICS_BIND": given})
    assert settings.metrics_bind == expected


@pytest.mark.parametrize(
    "given",
    [
        "0.0.0.0:9464",
        "[::]:9464",
        "10.1.2.3:9464",
        "metrics.example.com:9464",
        "nine",
        "0",
        "70000",
    ],
)
def test_the_metrics_port_refuses_addresses_others_can_reach_and_nonsense(tmp_path, given):
    with pytest.raises(ConfigurationError, match="IDP_METRICS_BIND"):
        load_settings(str(tmp_path), environ={"IDP_METRICS_BIND": given})


@pytest.mark.parametrize("given", ["short", "x" * 31, "has a space in it " * 3, "é" * 40])
def test_the_metrics_token_is_a_long_plain_secret(tmp_path, given):
    with pytest.raises(ConfigurationError, match="IDP_METRICS_TOKEN"):
        load_settings(str(tmp_path), environ={"IDP_METRICS_TOKEN": given})
    token = "t" * 32
    assert load_settings(str(tmp_path), environ={"IDP_METRICS_TOKEN": token}).metrics_token == token
