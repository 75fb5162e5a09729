"""Builds the services of one application and hands them to the HTTP and CLI layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from idp.rate_limits import current_strategy
from idp.services.access_tokens import AccessTokenService
from idp.services.accounts import AccountService
from idp.services.background import BackgroundJobs
from idp.services.clients import RecentClients
from idp.services.keys import KeyStore
from idp.services.mail import LogBackend, MailBackend, MailService, SMTPBackend
from idp.services.maintenance import MaintenanceService
from idp.services.outbox import Outbox
from idp.services.passwords import PasswordService
from idp.services.readiness import ReadinessService
from idp.services.revocation_cache import RevocationCache
from idp.services.sealing import Sealer
from idp.services.sessions import SessionService
from idp.services.throttle import Throttle

EXTENSION_KEY = "idp.services"
# Changing it makes every queued mail unreadable; see README "Mail".
OUTBOX_SEAL_PURPOSE = "idp mail outbox v1"
# How long a process may go on trusting a client row it read (see RecentClients).
CLIENT_MEMORY_SECONDS = 5.0


@dataclass(frozen=True)
class Services:
    settings: dict[str, Any]
    keys: KeyStore
    passwords: PasswordService
    access_tokens: AccessTokenService
    sessions: SessionService
    outbox: Outbox
    clients: RecentClients
    accounts: AccountService
    jobs: BackgroundJobs
    readiness: ReadinessService
    maintenance: MaintenanceService


def init_app(app: Flask, settings: dict[str, Any]) -> Services:
    """Create the services for an application from its settings."""
    keys = KeyStore(settings["IDP_KEYS_DIR"], settings["IDP_KEYS_RELOAD_INTERVAL"])
    passwords = PasswordService(
        settings["IDP_ARGON2_TIME_COST"],
        settings["IDP_ARGON2_MEMORY_COST"],
        settings["IDP_ARGON2_PARALLELISM"],
        settings["IDP_ARGON2_MAX_CONCURRENT"],
    )
    revocations = RevocationCache(
        settings["IDP_REDIS_URL"],
        settings["IDP_RATELIMIT_PREFIX"],
        settings["IDP_ACCESS_TOKEN_TTL"] + settings["IDP_TOKEN_LEEWAY"],
    )
    access_tokens = AccessTokenService(
        keys,
        issuer=settings["IDP_ISSUER"],
        audience=settings["IDP_AUDIENCE"],
        ttl=settings["IDP_ACCESS_TOKEN_TTL"],
        leeway=settings["IDP_TOKEN_LEEWAY"],
        revocations=revocations,
    )
    sessions = SessionService(
        access_tokens,
        revocations,
        settings["IDP_REFRESH_TOKEN_TTL"],
        settings["IDP_REFRESH_REUSE_GRACE"],
        settings["IDP_SESSION_MAX_AGE"],
    )
    backend: MailBackend
    if settings["IDP_MAIL_SERVER"]:
        backend = SMTPBackend(settings["IDP_MAIL_TIMEOUT"])
    else:
        backend = LogBackend()

    def throttle(scope: str, setting: str) -> Throttle:
        return Throttle(
            scope,
            settings[setting],
            strategy=current_strategy,
            enabled=settings["IDP_RATELIMIT_ENABLED"],
            prefix=settings["IDP_RATELIMIT_PREFIX"],
        )

    outbox = Outbox(
        MailService(backend, settings["IDP_FRONTEND_URL"]),
        Sealer(settings["IDP_SECRET_KEY"], OUTBOX_SEAL_PURPOSE),
        throttle("email.mail", "IDP_MAILS_PER_ADDRESS"),
        max_attempts=settings["IDP_MAIL_MAX_ATTEMPTS"],
        retry_delay=settings["IDP_MAIL_RETRY_DELAY"],
    )
    jobs = BackgroundJobs(app)
    services = Services(
        settings=settings,
        keys=keys,
        passwords=passwords,
        access_tokens=access_tokens,
        sessions=sessions,
        outbox=outbox,
        clients=RecentClients(CLIENT_MEMORY_SECONDS),
        accounts=AccountService(
            passwords,
            outbox,
            sessions,
            jobs,
            throttle("user.login", "IDP_LOGIN_FAILURES_PER_ACCOUNT"),
            source_failures=throttle("user.login_source", "IDP_LOGIN_FAILURES_PER_SOURCE"),
            api_client_id=settings["IDP_API_CLIENT_ID"],
            registration_privacy=settings["IDP_REGISTRATION_PRIVACY"],
        ),
        jobs=jobs,
        readiness=ReadinessService(keys, settings["IDP_REDIS_URL"]),
        maintenance=MaintenanceService(
            settings["IDP_ACCESS_TOKEN_TTL"], settings["IDP_TOKEN_LEEWAY"]
        ),
    )
    app.extensions[EXTENSION_KEY] = services
    return services


def get_services() -> Services:
    """Return the services of the current application."""
    return current_app.extensions[EXTENSION_KEY]
