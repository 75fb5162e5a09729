"""Builds the services of one application and hands them to the HTTP and CLI layers."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from idp.config import Settings
from idp.rate_limits import current_strategy
from idp.services.access_tokens import AccessTokenService
from idp.services.accounts import AccountService
from idp.services.authorizations import AuthorizationService
from idp.services.background import BackgroundJobs
from idp.services.browser_sessions import BrowserSessionService
from idp.services.clients import RecentClients
from idp.services.keys import KeyStore
from idp.services.login_walls import LoginWalls
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
    settings: Settings
    keys: KeyStore
    passwords: PasswordService
    access_tokens: AccessTokenService
    sessions: SessionService
    outbox: Outbox
    clients: RecentClients
    accounts: AccountService
    browser_sessions: BrowserSessionService
    authorizations: AuthorizationService
    jobs: BackgroundJobs
    readiness: ReadinessService
    maintenance: MaintenanceService


def init_app(app: Flask, settings: Settings) -> Services:
    """Create the services for an application from its settings."""
    keys = KeyStore(settings.keys_dir, settings.keys_reload_interval)
    passwords = PasswordService(
        settings.argon2_time_cost,
        settings.argon2_memory_cost,
        settings.argon2_parallelism,
        settings.argon2_max_concurrent,
    )
    revocations = RevocationCache(
        settings.redis_url,
        settings.ratelimit_prefix,
        settings.access_token_ttl + settings.token_leeway,
    )
    access_tokens = AccessTokenService(
        keys,
        issuer=settings.issuer,
        audience=settings.audience,
        ttl=settings.access_token_ttl,
        leeway=settings.token_leeway,
        revocations=revocations,
    )
    sessions = SessionService(
        access_tokens,
        revocations,
        settings.refresh_token_ttl,
        settings.refresh_reuse_grace,
        settings.session_max_age,
    )
    backend: MailBackend = (
        SMTPBackend(settings.mail_timeout) if settings.mail_server else LogBackend()
    )

    def throttle(scope: str, limit: str) -> Throttle:
        return Throttle(
            scope,
            limit,
            strategy=current_strategy,
            enabled=settings.ratelimit_enabled,
            prefix=settings.ratelimit_prefix,
        )

    outbox = Outbox(
        MailService(backend, settings.frontend_url),
        Sealer(settings.secret_key, OUTBOX_SEAL_PURPOSE),
        throttle("email.mail", settings.mails_per_address),
        max_attempts=settings.mail_max_attempts,
        retry_delay=settings.mail_retry_delay,
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
            LoginWalls(
                throttle("user.login", settings.login_failures_per_account),
                throttle("user.login_source", settings.login_failures_per_source),
            ),
            api_client_id=settings.api_client_id,
            registration_privacy=settings.registration_privacy,
        ),
        browser_sessions=BrowserSessionService(
            sessions, settings.browser_session_idle, settings.browser_session_max_age
        ),
        authorizations=AuthorizationService(sessions, settings.authorization_code_ttl),
        jobs=jobs,
        readiness=ReadinessService(keys, settings.redis_url, app.config["IDP_MIGRATIONS_DIR"]),
        maintenance=MaintenanceService(settings.access_token_ttl, settings.token_leeway),
    )
    app.extensions[EXTENSION_KEY] = services
    return services


def get_services() -> Services:
    """Return the services of the current application."""
    return current_app.extensions[EXTENSION_KEY]
