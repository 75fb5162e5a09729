"""Configuration: defaults, then ``IDP_*`` environment variables, then explicit overrides."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
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


def _rate_limit(value: str) -> str:
    """A limit in flask-limiter's notation ("5 per minute"), checked, kept as written."""
    try:
        parse_many(value)
    except ValueError as exc:
        raise ValueError(f"not a rate limit ({exc})") from exc
    return value


def _color(value: str) -> str:
    """A CSS hex colour (#rgb or #rrggbb): it is written into the stylesheet, nothing else is."""
    text = value.strip()
    digits = text[1:]
    if (
        not text.startswith("#")
        or len(digits) not in (3, 6)
        or not all(ch in "0123456789abcdefABCDEF" for ch in digits)
    ):
        raise ValueError(f"not a hex colour: {value!r}")
    return text


def _log_format(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in ("json", "text"):
        raise ValueError(f"must be json or text, not {value!r}")
    return lowered


def _networks(value: str) -> tuple[str, ...]:
    """Comma-separated networks (CIDR), each checked; a catch-all is refused."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        network = ipaddress.ip_network(item, strict=False)  # ValueError names the bad item
        if network.prefixlen == 0:
            raise ValueError(f"{item} exempts everyone: set IDP_RATELIMIT_ENABLED=false instead")
        networks.append(str(network))
    return tuple(networks)


MIN_METRICS_TOKEN_LENGTH = 32


def _metrics_token(value: str) -> str:
    """A bearer secret for GET /metrics: long, and nothing a header would mangle."""
    token = value.strip()
    if len(token) < MIN_METRICS_TOKEN_LENGTH:
        raise ValueError(
            f"must be at least {MIN_METRICS_TOKEN_LENGTH} characters; make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    if not all("!" <= ch <= "~" for ch in token):
        raise ValueError("must be printable ASCII without spaces")
    return token


def _metrics_bind(value: str) -> tuple[str, int]:
    """`port` or `host:port` on a loopback address: the port has no authentication."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{value!r} is not `port` or `host:port`") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not between 1 and 65535")
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise ValueError(
            f"{host} is not a loopback address: the metrics port has no authentication; "
            "to scrape over the network use IDP_METRICS_TOKEN on the main port"
        )
    return host, port


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


def _setting(
    parse: Callable[[str], Any], default: Any, bounds: tuple[int, int] | None = None
) -> Any:
    """Declare a setting: how IDP_<NAME> is parsed, its default and, for numbers, its bounds."""
    return field(default=default, metadata={"parse": parse, "bounds": bounds})


@dataclass(frozen=True)
class Settings:
    """Every IDP_* setting, typed and bounded in one place; read as attributes.

    A field `name` is read from the environment variable IDP_NAME. Bounds keep a typo from
    producing an insecure server. Defaults that depend on other settings or on the instance
    folder (audience, frontend URL, database, development secret) are filled in by
    load_settings().
    """

    env: str = _setting(_environment, DEVELOPMENT)
    database_url: str = _setting(str, None)
    redis_url: str | None = _setting(str, None)
    issuer: str = _setting(str, "http://localhost:5000")
    audience: str = _setting(str, None)
    keys_dir: str = _setting(str, "keys")
    keys_reload_interval: int = _setting(_int, 5, (1, 10))
    secret_key: str = _setting(str, None)
    mail_server: str | None = _setting(str, None)
    mail_port: int = _setting(_int, 25)
    mail_use_tls: bool = _setting(_bool, False)
    mail_use_ssl: bool = _setting(_bool, False)
    mail_username: str | None = _setting(str, None)
    mail_password: str | None = _setting(str, None)
    mail_default_sender: str = _setting(str, "idp <no-reply@localhost>")
    mail_timeout: int = _setting(_int, 10, (1, 60))
    mail_max_attempts: int = _setting(_int, 8, (1, 50))
    mail_retry_delay: int = _setting(_int, 60, (0, 3600))
    frontend_url: str = _setting(str, None)
    access_token_ttl: int = _setting(_int, 3600, (60, 24 * 3600))
    refresh_token_ttl: int = _setting(_int, 14 * 24 * 3600, (300, 365 * 24 * 3600))
    refresh_reuse_grace: int = _setting(_int, 0, (0, 60))
    session_max_age: int = _setting(_int, 30 * 24 * 3600, (300, 365 * 24 * 3600))
    token_leeway: int = _setting(_int, 5, (0, 5))
    trusted_proxies: int = _setting(_int, 0, (0, 10))
    # One IPv6 host usually holds a whole /64; counting /128s apart would make it unlimited.
    ipv6_prefix_length: int = _setting(_int, 64, (32, 128))
    api_client_id: str = _setting(str, "idp-api")
    max_content_length: int = _setting(_int, 64 * 1024)
    argon2_time_cost: int = _setting(_int, 3, (1, 20))
    argon2_memory_cost: int = _setting(_int, 65536, (8, 4 * 1024 * 1024))
    argon2_parallelism: int = _setting(_int, 4, (1, 16))
    argon2_max_concurrent: int = _setting(_int, 2, (1, 64))
    log_level: str = _setting(str, "INFO")
    # json (one object per line) or text; unset: text under `flask run`, json everywhere else.
    log_format: str | None = _setting(_log_format, None)
    # Audit lines go to this file (appended, JSON) instead of stderr with the other logs.
    audit_log: str | None = _setting(str, None)
    ratelimit_enabled: bool = _setting(_bool, True)
    ratelimit_auth: str = _setting(_rate_limit, "5 per minute")
    ratelimit_session: str = _setting(_rate_limit, "30 per minute")
    ratelimit_verify: str = _setting(_rate_limit, "300 per minute")
    ratelimit_oauth: str = _setting(_rate_limit, "300 per minute")
    login_failures_per_account: str = _setting(_rate_limit, "100 per hour")
    login_failures_per_source: str = _setting(_rate_limit, "10 per 15 minutes")
    mails_per_address: str = _setting(_rate_limit, "5 per hour")
    ratelimit_prefix: str = _setting(str, "idp")
    # Sources (a backend that signs users in on their behalf) the per-address route limits
    # skip; the per-account throttles still hold for them.
    ratelimit_exempt_networks: tuple[str, ...] = _setting(_networks, ())
    # Prometheus: GET /metrics on the main port for this bearer token, and/or a loopback port
    # of gunicorn's master. Neither set: no metrics endpoint at all.
    metrics_token: str | None = _setting(_metrics_token, None)
    metrics_bind: tuple[str, int] | None = _setting(_metrics_bind, None)
    cors_origins: tuple[str, ...] = _setting(str, ())
    registration_privacy: bool = _setting(_bool, False)
    allow_memory_ratelimit: bool = _setting(_bool, False)
    # Development only: accept plain-http redirect URIs for hosts other than loopback.
    allow_http_redirects: bool = _setting(_bool, False)
    # The hosted pages' browser session (single sign-on): idle and absolute lifetimes.
    browser_session_idle: int = _setting(_int, 24 * 3600, (300, 30 * 24 * 3600))
    browser_session_max_age: int = _setting(_int, 14 * 24 * 3600, (600, 365 * 24 * 3600))
    authorization_code_ttl: int = _setting(_int, 60, (10, 600))
    product_name: str = _setting(str, "idp")
    # The hosted pages' accent colour (a CSS hex colour).
    brand_color: str = _setting(_color, "#2f5bd3")

    @property
    def metrics_enabled(self) -> bool:
        """Whether idp counts requests and serves metrics (IDP_METRICS_TOKEN or _BIND set)."""
        return bool(self.metrics_token or self.metrics_bind)


def env_name(name: str) -> str:
    """The environment variable of a setting: `issuer` is IDP_ISSUER."""
    return f"IDP_{name.upper()}"


# Every variable the server reads, for checks of deployment files.
ENVIRONMENT_VARIABLES = frozenset(env_name(spec.name) for spec in fields(Settings))


def load_settings(
    instance_path: str,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Return the validated settings for one application.

    `overrides` are keyed like the environment (IDP_ISSUER); a string is parsed as the
    environment's would be, anything else taken as it is.
    """
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    values: dict[str, Any] = {}
    for spec in fields(Settings):
        name, parse = env_name(spec.name), spec.metadata["parse"]
        raw = overrides.pop(name, environ.get(name))
        if raw is None or raw == "":
            values[spec.name] = spec.default
            continue
        try:
            values[spec.name] = parse(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise ConfigurationError(f"{name}: {exc}") from exc
    if overrides:
        raise ConfigurationError(f"unknown settings: {', '.join(sorted(overrides))}")

    for spec in fields(Settings):
        bounds = spec.metadata["bounds"]
        if bounds and not bounds[0] <= values[spec.name] <= bounds[1]:
            raise ConfigurationError(
                f"{env_name(spec.name)} must be between {bounds[0]} and {bounds[1]}"
            )

    issuer = values["issuer"].rstrip("/")
    if not issuer.startswith(("https://", "http://")):
        raise ConfigurationError("IDP_ISSUER must be an http(s) URL")
    values["issuer"] = issuer
    values["audience"] = values["audience"] or issuer
    values["frontend_url"] = (values["frontend_url"] or issuer).rstrip("/")
    values["keys_dir"] = str(Path(values["keys_dir"]).resolve())
    values["cors_origins"] = _origins(values["cors_origins"])
    if values["env"] == PRODUCTION:
        # Before any development default (the generated secret) can fill a gap.
        _refuse_unsafe_production(values)
    if not values["database_url"]:
        values["database_url"] = f"sqlite:///{Path(instance_path) / 'idp.sqlite3'}"
    if not values["secret_key"]:
        values["secret_key"] = _instance_secret(Path(instance_path))
    return Settings(**values)


def _refuse_unsafe_production(settings: Mapping[str, Any]) -> None:
    """Raise ConfigurationError for conveniences that are fine on a laptop and unsafe live."""
    secret = settings["secret_key"]
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
    for name in ("issuer", "frontend_url"):
        url = urlsplit(settings[name])
        if url.scheme != "https" and url.hostname not in _LOCAL_HOSTS:
            raise ConfigurationError(
                f"{env_name(name)} must be an https:// URL when IDP_ENV=production "
                "(plain http only for localhost)"
            )
    if settings["allow_http_redirects"]:
        raise ConfigurationError(
            "IDP_ALLOW_HTTP_REDIRECTS is for development: with IDP_ENV=production a redirect "
            "URI is https, loopback http, or an app's own scheme"
        )
    if not settings["mail_server"]:
        raise ConfigurationError(
            "IDP_MAIL_SERVER must be set when IDP_ENV=production; without it mails, with their "
            "live verification and reset links, are written to the log"
        )
    if (
        settings["ratelimit_enabled"]
        and not settings["redis_url"]
        and not settings["allow_memory_ratelimit"]
    ):
        raise ConfigurationError(
            "IDP_REDIS_URL must be set when IDP_ENV=production: counters in process memory "
            "multiply every rate limit by the number of workers and instances "
            "(IDP_ALLOW_MEMORY_RATELIMIT=true accepts that for a single-process deployment)"
        )


def _origins(value: str | Sequence[str]) -> tuple[str, ...]:
    """Parse the CORS allowlist: exact origins only, never a wildcard."""
    items = value.split(",") if isinstance(value, str) else value
    origins = []
    for item in (i.strip().rstrip("/") for i in items):
        if not item:
            continue
        scheme, sep, rest = item.partition("://")
        if not sep or scheme not in ("http", "https") or not rest or "/" in rest or "*" in rest:
            raise ConfigurationError(f"IDP_CORS_ORIGINS: {item!r} is not an origin")
        origins.append(item)
    return tuple(origins)


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


def flask_config(settings: Settings) -> dict[str, Any]:
    """Translate the settings into the keys Flask and its extensions read."""
    # hide_parameters: a database error logged with its statement must not carry password
    # hashes, token digests or addresses along.
    secure = settings.issuer.startswith("https://")
    engine_options: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
    if settings.database_url.startswith("sqlite"):
        # Wait for the write lock instead of failing with "database is locked".
        engine_options = {"connect_args": {"timeout": 30}, "hide_parameters": True}
    elif settings.database_url.startswith("postgresql"):
        # During an outage a request fails fast (503) instead of hanging: a connection attempt
        # to an unresponsive host gives up after DB_CONNECT_TIMEOUT s, and a request waits at
        # most DB_POOL_TIMEOUT s for a free connection from the pool.
        engine_options["connect_args"] = {"connect_timeout": DB_CONNECT_TIMEOUT}
        engine_options["pool_timeout"] = DB_POOL_TIMEOUT
        # A dead pooled connection is told by a look at its socket on checkout instead of a
        # SELECT round trip on every request (idp.database._configure_postgresql).
        engine_options["pool_pre_ping"] = False
    return {
        "SECRET_KEY": settings.secret_key,
        "SQLALCHEMY_DATABASE_URI": settings.database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options,
        "MAX_CONTENT_LENGTH": settings.max_content_length,
        "JSON_SORT_KEYS": False,
        "MAIL_SERVER": settings.mail_server,
        "MAIL_PORT": settings.mail_port,
        "MAIL_USE_TLS": settings.mail_use_tls,
        "MAIL_USE_SSL": settings.mail_use_ssl,
        "MAIL_USERNAME": settings.mail_username,
        "MAIL_PASSWORD": settings.mail_password,
        "MAIL_DEFAULT_SENDER": settings.mail_default_sender,
        # flask-mail suppresses sending whenever app.testing is set; we decide that ourselves.
        "MAIL_SUPPRESS_SEND": False,
        # The hosted pages' signed cookie (their CSRF token only; see idp.http.middleware).
        "SESSION_COOKIE_NAME": "__Host-idp_csrf" if secure else "idp_csrf",
        "SESSION_COOKIE_SECURE": secure,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_PATH": "/",
        # Flask-WTF: a form's CSRF token is good for an hour (a slow sign-up is not refused).
        "WTF_CSRF_TIME_LIMIT": 3600,
    }
