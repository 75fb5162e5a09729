"""docker-compose.yml and the Dockerfile, checked for structure (no Docker engine runs here)."""

import re
from pathlib import Path

import pytest
import yaml

from idp.config import ENVIRONMENT_VARIABLES, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_stack_has_its_services_and_health_checks(compose):
    services = compose["services"]
    assert set(services) == {"idp", "proxy", "mailer", "postgres", "redis", "mailpit"}
    for name in ("idp", "postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
    assert "/readyz" in " ".join(services["idp"]["healthcheck"]["test"])
    depends = services["idp"]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"


def test_idp_migrates_and_has_a_key_before_it_serves(compose):
    command = " ".join(compose["services"]["idp"]["command"])
    upgrade, rotate, serve = (
        command.index("db upgrade"),
        command.index("keys rotate"),
        command.index("gunicorn"),
    )
    assert upgrade < rotate < serve
    assert "exec gunicorn" in command


def test_a_mail_worker_shares_the_servers_settings_and_starts_after_the_migration(compose):
    idp, mailer = compose["services"]["idp"], compose["services"]["mailer"]
    assert mailer["command"][-5:] == ["mail", "send-pending", "--loop", "--interval", "5"]
    server_settings = {k: v for k, v in idp["environment"].items() if k.startswith("IDP_")}
    # Same database, same SMTP, and the same secret that seals the queued mails.
    assert mailer["environment"] == server_settings
    assert mailer["depends_on"]["idp"]["condition"] == "service_healthy"


def test_keys_live_in_a_volume(compose):
    service = compose["services"]["idp"]
    assert "idp-keys:/app/keys" in service["volumes"]
    assert service["environment"]["IDP_KEYS_DIR"] == "/app/keys"
    assert "idp-keys" in compose["volumes"]


def test_every_setting_is_one_idp_knows_and_production_accepts_them(compose, tmp_path):
    environment = dict(compose["services"]["idp"]["environment"])
    unknown = [
        name
        for name in environment
        if name.startswith("IDP_") and name not in ENVIRONMENT_VARIABLES
    ]
    assert unknown == []
    assert re.fullmatch(r"\$\{IDP_SECRET_KEY:\?.+\}", environment["IDP_SECRET_KEY"])
    environment["IDP_SECRET_KEY"] = "x" * 48  # what the operator supplies
    settings = load_settings(str(tmp_path), environ=environment)
    assert settings.env == "production"
    assert settings.database_url.startswith("postgresql+psycopg://")
    db_service = compose["services"]["postgres"]["environment"]
    assert f"{db_service['POSTGRES_USER']}:{db_service['POSTGRES_PASSWORD']}@postgres" in (
        settings.database_url
    )


def test_the_image_contains_what_the_app_reads_at_run_time():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for needed in ("idp", "migrations", "templates", "wsgi.py", "gunicorn.conf.py"):
        assert re.search(rf"^COPY .*\b{re.escape(needed)}\b", dockerfile, re.M), needed
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)  # not root


def test_the_proxy_is_the_one_way_in_and_idp_trusts_it_alone(compose):
    idp, proxy = compose["services"]["idp"], compose["services"]["proxy"]
    assert "ports" not in idp  # reached through the proxy only
    assert idp["environment"]["IDP_TRUSTED_PROXIES"] == "1"
    assert proxy["ports"] == ["8000:80"]
    mount = "./nginx/idp.conf.template:/etc/nginx/templates/default.conf.template:ro"
    assert mount in proxy["volumes"]
    assert (ROOT / "nginx" / "idp.conf.template").is_file()
    assert proxy["environment"]["IDP_UPSTREAM"] == "idp:8000"
    assert "0.0.0.0:8000" in " ".join(idp["command"])
