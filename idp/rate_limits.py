"""Per-address route limits (flask-limiter), one limiter per application.

"Per address" means per IPv4 address and per IPv6 network (IDP_IPV6_PREFIX_LENGTH, a /64 by
default), taken after the trusted-proxy rule: see idp.client_address.

Limits are named scope.action and declared in ROUTE_LIMITS below. Counters live in Redis when
IDP_REDIS_URL is set, shared by every worker and instance; in process memory otherwise. If Redis
fails, limits fall back to process memory instead of failing open or refusing service.
"""

from __future__ import annotations

import ipaddress
import logging
import time

from flask import Flask, current_app, request
from flask_limiter import HeaderNames, Limiter, RequestLimit
from limits.strategies import RateLimiter

from idp import audit, metrics
from idp.client_address import site_of, source_of
from idp.config import Settings

log = logging.getLogger(__name__)

EXTENSION_KEY = "idp.limiter"

# endpoint -> (limit name, the Settings field that holds its value)
ROUTE_LIMITS = {
    "api.register": ("ip.register", "ratelimit_auth"),
    "api.login": ("ip.login", "ratelimit_auth"),
    "api.verify_email": ("ip.verify_email", "ratelimit_auth"),
    "api.resend_verification": ("ip.resend_verification", "ratelimit_auth"),
    "api.password_reset": ("ip.password_reset", "ratelimit_auth"),
    "api.password_reset_confirm": ("ip.password_reset_confirm", "ratelimit_auth"),
    "api.refresh": ("ip.refresh", "ratelimit_session"),
    "api.logout": ("ip.logout", "ratelimit_session"),
    "api.verify_token": ("ip.verify_token", "ratelimit_verify"),
    "api.consents": ("ip.consents", "ratelimit_session"),
    "api.withdraw_consent": ("ip.consents", "ratelimit_session"),
    # The hosted pages' forms share the API's counters: one budget per address, either way in.
    "pages.sign_in": ("ip.login", "ratelimit_auth"),
    "account_pages.sign_up": ("ip.register", "ratelimit_auth"),
    "account_pages.confirm_email": ("ip.verify_email", "ratelimit_auth"),
    "account_pages.forgot_password": ("ip.password_reset", "ratelimit_auth"),
    "account_pages.new_password": ("ip.password_reset_confirm", "ratelimit_auth"),
    "oauth.token": ("ip.oauth_token", "ratelimit_oauth"),
    "oauth.revoke": ("ip.oauth_revoke", "ratelimit_oauth"),
    "oauth.introspect": ("ip.oauth_introspect", "ratelimit_oauth"),
}


def init_app(app: Flask, settings: Settings) -> Limiter:
    """Create the application's limiter and apply the route limits to registered views."""
    enabled = settings.ratelimit_enabled
    limiter = Limiter(
        key_func=request_source,
        app=app,
        storage_uri=settings.redis_url or "memory://",
        strategy="moving-window",
        key_prefix=settings.ratelimit_prefix,
        headers_enabled=True,
        # flask-limiter would put Retry-After on every answer; RFC 9110 gives it to 429 (and
        # 503/3xx) only, and our 429 sets it itself.
        header_name_mapping={HeaderNames.RETRY_AFTER: "X-RateLimit-Retry-After"},
        swallow_errors=True,
        on_breach=_audit_breach,
        in_memory_fallback_enabled=True,
        enabled=enabled,
    )
    exempt = tuple(ipaddress.ip_network(network) for network in settings.ratelimit_exempt_networks)
    if exempt:

        @limiter.request_filter
        def _exempt_source() -> bool:
            # The address after the trusted-proxy rule, as every limit counts it.
            try:
                address = ipaddress.ip_address(request.remote_addr or "")
            except ValueError:
                return False
            return any(address in network for network in exempt)

    if enabled:
        # Disabled, flask-limiter would still run each wrapped view's check (to find nothing):
        # a limiter that is off costs nothing instead.
        for endpoint, (scope, setting) in ROUTE_LIMITS.items():
            view = app.view_functions[endpoint]
            # Shared by name: the sign-in page and the API's login count against one budget.
            limit = limiter.shared_limit(getattr(settings, setting), scope=scope)
            app.view_functions[endpoint] = limit(view)
    app.extensions[EXTENSION_KEY] = limiter
    if not enabled:
        log.warning("rate limiting is DISABLED (IDP_RATELIMIT_ENABLED=false)")
    return limiter


def _audit_breach(breached: RequestLimit) -> None:
    """Record a refused request: the limiter is the one that acts (it answers 429 itself)."""
    metrics.count_route_limit_refusal(ROUTE_LIMITS.get(request.endpoint or "", ("other",))[0])
    audit.record(
        "rate_limit.exceeded", "denied", endpoint=request.endpoint, limit=str(breached.limit)
    )


def request_source() -> str:
    """The current client's key for per-address limits (after the trusted-proxy rule)."""
    return source_of(request.remote_addr, current_app.config["IDP"].ipv6_prefix_length)


def request_site() -> str | None:
    """The current client's IPv6 site (/48), None for IPv4 (see idp.client_address)."""
    return site_of(request.remote_addr)


def current_strategy() -> RateLimiter:
    """The limiter strategy over the current app's storage (or its in-memory fallback)."""
    return current_app.extensions[EXTENSION_KEY].limiter


def seconds_until_reset() -> int:
    """Seconds until the limit that refused the current request lets it through again."""
    limiter: Limiter = current_app.extensions[EXTENSION_KEY]
    current = limiter.current_limit
    if current is None:
        return 60
    return max(1, int(current.reset_at - time.time()))
