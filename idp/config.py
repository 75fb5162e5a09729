"""Configuration: defaults, then ``IDP_*`` environment variables, then explicit overrides."""

from __future__ import annotations

import fcntl
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from limits import parse_many

from idp.errors import ConfigurationError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _int(value: str) -> int:
    return int(value.strip())


DEVELOPMENT = "development"
PRODUCTION = "production"
ENVIRONMENTS = (DEVELOPMENT, PRODUCTION)
# Hosts where a plain-http issuer is a developer's own machine, not a network.
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
MIN_PRODUCTION_SECRET_LENGTH = 32
# PostgreSQL: seconds to wait for a new connection, and for a free one from the pool.
DB_CONNECT_TIMEOUT = 3
DB_POOL_TIMEOUT = 5


def _environment(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in ENVIRONMENTS:
        raise ValueError(f"must be one of {', '.join(ENVIRONMENTS)}, not {value!r}")
    return lowered


# name -> (parser, default). Defaults that depend on the instance folder are filled in later.
SETTINGS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "IDP_ENV": (_environment, DEVELOPMENT),
    "IDP_DATABASE_URL": (str, None),
    "IDP_REDIS_URL": (str, None),
    "IDP_ISSUER": (str, "http://localhost:5000"),
    "IDP_AUDIENCE": (str, None),
    "IDP_KEYS_DIR": (str, "keys"),
    "IDP_KEYS_RELOAD_INTERVAL": (_int, 5),
    "IDP_SECRET_KEY": (str, None),
    "IDP_MAIL_SERVER": (str, None),
    "IDP_MAIL_PORT": (_int, 25),
    "IDP_MAIL_USE_TLS": (_bool, False),
    "IDP_MAIL_USE_SSL": (_bool, False),
    "IDP_MAIL_USERNAME": (str, None),
    "IDP_MAIL_PASSWORD": (str, None),
    "IDP_MAIL_DEFAULT_SENDER": (str, "idp <no-reply@localhost>"),
    "IDP_MAIL_TIMEOUT": (_int, 10),
    "IDP_MAIL_MAX_ATTEMPTS": (_int, 8),
    "IDP_MAIL_RETRY_DELAY": (_int, 60),
    "IDP_FRONTEND_URL": (str, None),
    "IDP_ACCESS_TOKEN_TTL": (_int, 3600),
    "IDP_REFRESH_TOKEN_TTL": (_int, 14 * 24 * 3600),
    "IDP_REFRESH_REUSE_GRACE": (_int, 0),
    "IDP_SESSION_MAX_AGE": (_int, 30 * 24 * 3600),
    "IDP_TOKEN_LEEWAY": (_int, 5),
    "IDP_TRUSTED_PROXIES": (_int, 0),
    "IDP_IPV6_PREFIX_LENGTH": (_int, 64),
    "IDP_API_CLIENT_ID": (str, "idp-api"),
    "IDP_MAX_CONTENT_LENGTH": (_int, 64 * 1024),
    "IDP_ARGON2_TIME_COST": (_int, 3),
    "IDP_ARGON2_MEMORY_COST": (_int, 65536),
    "IDP_ARGON2_PARALLELISM": (_int, 4),
    "IDP_LOG_LEVEL": (str, "INFO"),
    "IDP_RATELIMIT_ENABLED": (_bool, True),
    "IDP_RATELIMIT_AUTH": (str, "5 per minute"),
    "IDP_RATELIMIT_SESSION": (str, "30 per minute"),
    "IDP_RATELIMIT_VERIFY": (str, "300 per minute"),
    "IDP_RATELIMIT_OAUTH": (str, "300 per minute"),
    "IDP_LOGIN_FAILURES_PER_ACCOUNT": (str, "100 per hour"),
    "IDP_LOGIN_FAILURES_PER_SOURCE": (str, "10 per 15 minutes"),
    "IDP_MAILS_PER_ADDRESS": (str, "5 per hour"),
    "IDP_RATELIMIT_PREFIX": (str, "idp"),
    "IDP_ARGON2_MAX_CONCURRENT": (_int, 2),
    "IDP_CORS_ORIGINS": (str, ""),
    "IDP_REGISTRATION_PRIVACY": (_bool, False),
    "IDP_ALLOW_MEMORY_RATELIMIT": (_bool, False),
}

# Bounds that keep a typo from producing an insecure server.
_LIMITS = {
    "IDP_ACCESS_TOKEN_TTL": (60, 24 * 3600),
    "IDP_REFRESH_TOKEN_TTL": (300, 365 * 24 * 3600),
    "IDP_REFRESH_REUSE_GRACE": (0, 60),
    "IDP_SESSION_MAX_AGE": (300, 365 * 24 * 3600),
    "IDP_TOKEN_LEEWAY": (0, 5),
    "IDP_TRUSTED_PROXIES": (0, 10),
    # One IPv6 host usually holds a whole /64; counting /128s apart would make it unlimited.
    "IDP_IPV6_PREFIX_LENGTH": (32, 128),
    "IDP_KEYS_RELOAD_INTERVAL": (1, 10),
    "IDP_MAIL_TIMEOUT": (1, 60),
    "IDP_MAIL_MAX_ATTEMPTS": (1, 50),
    "IDP_MAIL_RETRY_DELAY": (0, 3600),
    "IDP_ARGON2_TIME_COST": (1, 20),
    "IDP_ARGON2_MEMORY_COST": (8, 4 * 1024 * 1024),
    "IDP_ARGON2_PARALLELISM": (1, 16),
    "IDP_ARGON2_MAX_CONCURRENT": (1, 64),
}


def load_settings(
    instance_path: str,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the validated IDP_* settings for one application."""
    environ = os.environ if environ is None else environ
    settings: dict[str, Any] = {}
    for name, (parse, default) in SETTINGS.items():
        raw = environ.get(name)
        if raw is None or raw == "":
            settings[name] = default
            continue
        try:
            settings[name] = parse(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{name}: {exc}") from exc
    settings.update(overrides or {})

    for name, (low, high) in _LIMITS.items():
        if not low <= settings[name] <= high:
            raise ConfigurationError(f"{name} must be between {low} and {high}")

    issuer = settings["IDP_ISSUER"].rstrip("/")
    if not issuer.startswith(("https://", "http://")):
        raise ConfigurationError("IDP_ISSUER must be an http(s) URL")
    settings["IDP_ISSUER"] = issuer
    settings["IDP_AUDIENCE"] = settings["IDP_AUDIENCE"] or issuer
    settings["IDP_FRONTEND_URL"] = (settings["IDP_FRONTEND_URL"] or issuer).rstrip("/")
    settings["IDP_KEYS_DIR"] = str(Path(settings["IDP_KEYS_DIR"]).resolve())
    settings["IDP_CORS_ORIGINS"] = _origins(settings["IDP_CORS_ORIGINS"])
    for name in (
        "IDP_RATELIMIT_AUTH",
        "IDP_RATELIMIT_SESSION",
        "IDP_RATELIMIT_VERIFY",
        "IDP_RATELIMIT_OAUTH",
        "IDP_LOGIN_FAILURES_PER_ACCOUNT",
        "IDP_LOGIN_FAILURES_PER_SOURCE",
        "IDP_MAILS_PER_ADDRESS",
    ):
        try:
            parse_many(settings[name])
        except ValueError as exc:
            raise ConfigurationError(f"{name}: not a rate limit ({exc})") from exc
    if settings["IDP_ENV"] not in ENVIRONMENTS:
        raise ConfigurationError(f"IDP_ENV must be one of {', '.join(ENVIRONMENTS)}")
    if settings["IDP_ENV"] == PRODUCTION:
        # Before any development default (the generated secret) can fill a gap.
        _refuse_unsafe_production(settings)
    if not settings["IDP_DATABASE_URL"]:
        settings["IDP_DATABASE_URL"] = f"sqlite:///{Path(instance_path) / 'idp.sqlite3'}"
    if not settings["IDP_SECRET_KEY"]:
        settings["IDP_SECRET_KEY"] = _instance_secret(Path(instance_path))
    return settings


def _refuse_unsafe_production(settings: Mapping[str, Any]) -> None:
    """Raise ConfigurationError for conveniences that are fine on a laptop and unsafe live."""
    secret = settings["IDP_SECRET_KEY"]
    if not secret:
        raise ConfigurationError(
            "IDP_SECRET_KEY must be set when IDP_ENV=production; the development secret "
            "generated into instance/ is not shared by other hosts and is not managed as a secret"
        )
    if len(secret) < MIN_PRODUCTION_SECRET_LENGTH:
        raise ConfigurationError(
            f"IDP_SECRET_KEY must be at least {MIN_PRODUCTION_SECRET_LENGTH} characters "
            "when IDP_ENV=production"
        )
    for name in ("IDP_ISSUER", "IDP_FRONTEND_URL"):
        url = urlsplit(settings[name])
        if url.scheme != "https" and url.hostname not in _LOCAL_HOSTS:
            raise ConfigurationError(
                f"{name} must be an https:// URL when IDP_ENV=production "
                "(plain http only for localhost)"
            )
    if not settings["IDP_MAIL_SERVER"]:
        raise ConfigurationError(
            "IDP_MAIL_SERVER must be set when IDP_ENV=production; without it mails, with their "
            "live verification and reset links, are written to the log"
        )
    if (
        settings["IDP_RATELIMIT_ENABLED"]
        and not settings["IDP_REDIS_URL"]
        and not settings["IDP_ALLOW_MEMORY_RATELIMIT"]
    ):
        raise ConfigurationError(
            "IDP_REDIS_URL must be set when IDP_ENV=production: counters in process memory "
            "multiply every rate limit by the number of workers and instances "
            "(IDP_ALLOW_MEMORY_RATELIMIT=true accepts that for a single-process deployment)"
        )


def _origins(value: str | list[str]) -> list[str]:
    """Parse the CORS allowlist: exact origins only, never a wildcard."""
    items = value if isinstance(value, list) else value.split(",")
    origins = []
    for item in (i.strip().rstrip("/") for i in items):
        if not item:
            continue
        scheme, sep, rest = item.partition("://")
        if not sep or scheme not in ("http", "https") or not rest or "/" in rest or "*" in rest:
            raise ConfigurationError(f"IDP_CORS_ORIGINS: {item!r} is not an origin")
        origins.append(item)
    return origins


def _instance_secret(instance_path: Path) -> str:
    """Read the development secret kept under instance/, creating it once.

    Several processes may start at once (gunicorn workers, the mail worker): they take turns
    on a lock file, and the secret is written whole to a temporary file and renamed into place,
    so a process never reads a file that exists but is still empty, and only one is ever kept.
    """
    path = instance_path / "secret_key"
    instance_path.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        with open(instance_path / ".secret_key.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            if not path.exists():
                fd, temporary = tempfile.mkstemp(dir=instance_path, prefix=".secret_key.")
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_urlsafe(48))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
    secret = path.read_text().strip()
    if len(secret) < MIN_PRODUCTION_SECRET_LENGTH:
        # An empty or cut file (left by an older release's race) would seal mails and key the
        # audit pseudonyms under a secret anyone can rebuild: refuse to start on it.
        raise ConfigurationError(
            f"{path} holds no usable secret; delete it to have a new one made, "
            "or set IDP_SECRET_KEY"
        )
    return secret


def flask_config(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Translate IDP_* settings into the keys Flask and its extensions read."""
    # hide_parameters: a database error logged with its statement must not carry password
    # hashes, token digests or addresses along.
    engine_options: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
    if settings["IDP_DATABASE_URL"].startswith("sqlite"):
        # Wait for the write lock instead of failing with "database is locked".
        engine_options = {"connect_args": {"timeout": 30}, "hide_parameters": True}
    elif settings["IDP_DATABASE_URL"].startswith("postgresql"):
        # During an outage a request fails fast (503) instead of hanging: a connection attempt
        # to an unresponsive host gives up after DB_CONNECT_TIMEOUT s, and a request waits at
        # most DB_POOL_TIMEOUT s for a free connection from the pool.
        engine_options["connect_args"] = {"connect_timeout": DB_CONNECT_TIMEOUT}
        engine_options["pool_timeout"] = DB_POOL_TIMEOUT
        # A dead pooled connection is told by a look at its socket on checkout instead of a
        # SELECT round trip on every request (idp.database._configure_postgresql).
        engine_options["pool_pre_ping"] = False
    return {
        "SECRET_KEY": settings["IDP_SECRET_KEY"],
        "SQLALCHEMY_DATABASE_URI": settings["IDP_DATABASE_URL"],
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options,
        "MAX_CONTENT_LENGTH": settings["IDP_MAX_CONTENT_LENGTH"],
        "JSON_SORT_KEYS": False,
        "MAIL_SERVER": settings["IDP_MAIL_SERVER"],
        "MAIL_PORT": settings["IDP_MAIL_PORT"],
        "MAIL_USE_TLS": settings["IDP_MAIL_USE_TLS"],
        "MAIL_USE_SSL": settings["IDP_MAIL_USE_SSL"],
        "MAIL_USERNAME": settings["IDP_MAIL_USERNAME"],
        "MAIL_PASSWORD": settings["IDP_MAIL_PASSWORD"],
        "MAIL_DEFAULT_SENDER": settings["IDP_MAIL_DEFAULT_SENDER"],
        # flask-mail suppresses sending whenever app.testing is set; we decide that ourselves.
        "MAIL_SUPPRESS_SEND": False,
    }
