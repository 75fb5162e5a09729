"""A configuration the server refuses: one line naming the variable, exit status 2, no traceback;
for a `flask` command (the mail worker is one) and for gunicorn, before it forks a worker."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tests.e2e.conftest import ROOT, VENV_BIN

pytestmark = pytest.mark.e2e

REFUSALS = [
    ({"IDP_SECRET_KEY": "short"}, "IDP_SECRET_KEY"),
    ({"IDP_ISSUER": "http://id.example.com"}, "IDP_ISSUER"),
    ({"IDP_ACCESS_TOKEN_TTL": "nope"}, "IDP_ACCESS_TOKEN_TTL"),
    ({"IDP_ALLOW_HTTP_REDIRECTS": "true"}, "IDP_ALLOW_HTTP_REDIRECTS"),
    ({"IDP_METRICS_TOKEN": "too-short"}, "IDP_METRICS_TOKEN"),
    ({"IDP_METRICS_BIND": "0.0.0.0:9464"}, "IDP_METRICS_BIND"),
]


def production_env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(
        {
            "IDP_ENV": "production",
            "IDP_SECRET_KEY": "s" * 40,
            "IDP_ISSUER": "https://id.example.com",
            "IDP_MAIL_SERVER": "127.0.0.1",
            "IDP_RATELIMIT_ENABLED": "false",
            "IDP_DATABASE_URL": f"sqlite:///{tmp_path / 'idp.sqlite3'}",
            "IDP_KEYS_DIR": str(tmp_path / "keys"),
        }
    )
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(("extra", "variable"), REFUSALS)
def test_a_flask_command_refuses_in_one_line(tmp_path, extra, variable):
    done = run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "mail", "status"],
        production_env(tmp_path, **extra),
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("idp: refusing to start: ")
    assert variable in lines[0]


@pytest.mark.parametrize(("extra", "variable"), [*REFUSALS, ({}, "keys rotate")])
def test_gunicorn_refuses_before_forking_a_worker(tmp_path, extra, variable):
    # The last case: production with an empty keys folder (no signing key).
    args = [str(VENV_BIN / "gunicorn"), "-w", "2", "-b", "127.0.0.1:0", "wsgi:app"]
    assert_one_refusal(run(args, production_env(tmp_path, **extra)), variable)


def test_gunicorn_refuses_a_metrics_port_that_is_taken(tmp_path):
    env = production_env(tmp_path)
    for command in (["db", "upgrade"], ["keys", "rotate"]):  # otherwise ready to serve
        prepared = run([str(VENV_BIN / "flask"), "--app", "wsgi", *command], env)
        assert prepared.returncode == 0, prepared.stderr
    args = [str(VENV_BIN / "gunicorn"), "-w", "2", "-b", "127.0.0.1:0", "wsgi:app"]
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(args, {**env, "IDP_METRICS_BIND": f"127.0.0.1:{port}", "TMPDIR": str(temporary)})
    assert_one_refusal(done, "IDP_METRICS_BIND")
    # The folder made for the counts went with the refused start.
    assert not list(temporary.glob("idp-metrics-*"))


def assert_one_refusal(done: subprocess.CompletedProcess[str], variable: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    assert "Booting worker" not in output
    refusals = [line for line in output.splitlines() if line.startswith("idp: refusing")]
    assert len(refusals) == 1 and variable in refusals[0], output


def test_gunicorn_refuses_a_metrics_folder_others_may_write_to(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    env = production_env(tmp_path, IDP_METRICS_TOKEN="t" * 40, PROMETHEUS_MULTIPROC_DIR=str(shared))
    args = [str(VENV_BIN / "gunicorn"), "-w", "2", "-b", "127.0.0.1:0", "wsgi:app"]
    assert_one_refusal(run(args, env), "PROMETHEUS_MULTIPROC_DIR")


def test_gunicorn_refuses_metrics_settings_given_too_late_to_count_every_worker(tmp_path):
    env = production_env(tmp_path)
    for command in (["db", "upgrade"], ["keys", "rotate"]):
        prepared = run([str(VENV_BIN / "flask"), "--app", "wsgi", *command], env)
        assert prepared.returncode == 0, prepared.stderr
    args = [str(VENV_BIN / "gunicorn"), "-w", "2", "-b", "127.0.0.1:0"]
    args += ["-e", f"IDP_METRICS_TOKEN={'t' * 40}", "wsgi:app"]
    assert_one_refusal(run(args, env), "IDP_METRICS_TOKEN")


def test_keys_rotate_on_an_empty_folder_says_what_it_did_and_nothing_else(tmp_path):
    done = run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "keys", "rotate"], production_env(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    assert "run `flask --app wsgi keys rotate` first" not in done.stderr
    assert done.stdout.strip()  # the new kid
    listed = run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "keys", "list"], production_env(tmp_path)
    )
    assert done.stdout.strip() in listed.stdout


def test_gunicorn_refuses_a_database_that_was_never_migrated(tmp_path):
    env = production_env(tmp_path)
    created = run([str(VENV_BIN / "flask"), "--app", "wsgi", "keys", "rotate"], env)
    assert created.returncode == 0, created.stderr
    args = [str(VENV_BIN / "gunicorn"), "-w", "2", "-b", "127.0.0.1:0", "wsgi:app"]
    done = run(args, env)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Booting worker" not in output and "Traceback" not in output
    (refusal,) = [line for line in output.splitlines() if line.startswith("idp: refusing")]
    assert "db upgrade" in refusal and "never migrated" in refusal
