"""idp: a small OAuth2/OIDC-style identity provider."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from idp import audit, cli, database, http, logs, rate_limits
from idp.config import PRODUCTION, Settings, flask_config, load_settings
from idp.errors import ConfigurationError, SigningKeyError
from idp.extensions import mail
from idp.metrics import instrument
from idp.oauth.server import config_oauth
from idp.services import registry
from idp.services.keys import KeyStore

PROJECT_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


def _log_format(settings: Settings) -> str:
    """IDP_LOG_FORMAT, or its default: readable text under `flask run`, JSON elsewhere."""
    if settings.log_format:
        return settings.log_format
    running = os.environ.get("FLASK_RUN_FROM_CLI") == "true" and "run" in sys.argv[1:]
    return logs.TEXT if running else logs.JSON


def check_before_serving(instance_path: str) -> Settings:
    """Raise ConfigurationError for what would stop the server: gunicorn's master asks this
    before it forks a worker (gunicorn.conf.py), so a refusal is said once. Returns the
    settings it checked."""
    settings = load_settings(instance_path)
    _prepare_signing_key(KeyStore(settings.keys_dir, settings.keys_reload_interval), settings.env)
    _refuse_an_unmigrated_database(settings)
    return settings


def _refuse_an_unmigrated_database(settings: Settings) -> None:
    """A database that answers but is not at the migrations' head is refused before serving.

    One that does not answer is not: the server starts, says 503 and reports it at /readyz,
    and recovers when the database is back.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from idp.services.readiness import migrations_head, schema_version

    head = migrations_head(PROJECT_ROOT / "migrations" / "versions")
    engine = database.one_off_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            current = schema_version(connection)
    except SQLAlchemyError as exc:
        log.warning(
            "database not reachable at start (%s); serving 503 until it is", type(exc).__name__
        )
        return
    finally:
        engine.dispose()
    if current != head:
        raise ConfigurationError(
            f"the database is at schema {current or 'none (never migrated)'}, the code at {head}: "
            "run `flask --app wsgi db upgrade` first"
        )


def _prepare_signing_key(keys: KeyStore, environment: str) -> None:
    """Development: create the first key if there is none. Production: refuse to serve without.

    Production never generates a key on start: an admin creates it, deliberately, with
    `flask --app wsgi keys rotate`. That command builds the app too, so under the `flask`
    command (Flask sets FLASK_RUN_FROM_CLI) a missing key is only a warning.
    """
    if environment != PRODUCTION:
        keys.ensure_signing_key()
        return
    try:
        keys.signing_key()
    except SigningKeyError:
        message = (
            f"no signing key in IDP_KEYS_DIR ({keys.path}); IDP_ENV=production does not "
            "create one on start: run `flask --app wsgi keys rotate` first"
        )
        if os.environ.get("FLASK_RUN_FROM_CLI") == "true":
            # `keys rotate` is how the first key is made: no warning about itself.
            words = sys.argv[1:]
            if not any(words[i : i + 2] == ["keys", "rotate"] for i in range(len(words))):
                log.warning("%s", message)
            return
        raise ConfigurationError(message) from None


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build an application: config, extensions, blueprints, error handlers, CLI."""
    app = Flask(
        __name__,
        instance_path=str(PROJECT_ROOT / "instance"),
        template_folder=str(PROJECT_ROOT / "templates"),
    )
    settings = load_settings(app.instance_path, overrides=overrides)
    app.config.from_mapping(flask_config(settings))
    app.config["IDP"] = settings
    app.json.sort_keys = False  # type: ignore[attr-defined]
    logs.configure(_log_format(settings), settings.log_level)
    audit.init_app(app, settings.audit_log)

    database.init_app(app, str(PROJECT_ROOT / "migrations"))
    mail.init_app(app)
    services = registry.init_app(app, settings)
    _prepare_signing_key(services.keys, settings.env)
    config_oauth(app)
    # First of the request hooks, so that it times and counts what the others do too.
    instrument.init_app(app, requests=settings.metrics_enabled)

    from idp import api, oauth, probes
    from idp.metrics import views as metrics_views
    from idp.pages.surface import SURFACE as PAGES

    # Each surface brings its blueprints and its HTTP policy (errors, CSP, caching, CORS).
    surfaces = [api.SURFACE, oauth.SURFACE, PAGES, probes.SURFACE]
    if settings.metrics_token:
        surfaces.append(metrics_views.SURFACE)
    http.register_surfaces(app, surfaces)
    rate_limits.init_app(app, settings)
    http.init_app(app)
    cli.init_app(app)
    return app
