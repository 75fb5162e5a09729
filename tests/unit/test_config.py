import subprocess
import sys
import time

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
        print(load_settings(str(root / str(n)), environ={})["IDP_SECRET_KEY"])
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
