"""Per-address route limits (flask-limiter), one limiter per application.

"Per address" means per IPv4 address and per IPv6 network (IDP_IPV6_PREFIX_LENGTH, a /64 by
default), taken after the trusted-proxy rule: see idp.client_address.

Limits are named scope.action and declared in ROUTE_LIMITS below. Counters live in Redis when
IDP_REDIS_URL is set, shared by every worker and instance; in process memory otherwise. If Redis
fails, limits fall back to process memory instead of failing open or refusing service.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, current_app, request
from flask_limiter import HeaderNames, Limiter
from limits.strategies import RateLimiter

from idp.client_address import site_of, source_of

log = logging.getLogger(__name__)

EXTENSION_KEY = "idp.limiter"

# endpoint -> (limit name, setting that holds its value)
ROUTE_LIMITS = {
    "api.register": ("ip.register", "IDP_RATELIMIT_AUTH"),
    "api.login": ("ip.login", "IDP_RATELIMIT_AUTH"),
    "api.verify_email": ("ip.verify_email", "IDP_RATELIMIT_AUTH"),
    "api.resend_verification": ("ip.resend_verification", "IDP_RATELIMIT_AUTH"),
    "api.password_reset": ("ip.password_reset", "IDP_RATELIMIT_AUTH"),
    "api.password_reset_confirm": ("ip.password_reset_confirm", "IDP_RATELIMIT_AUTH"),
    "api.refresh": ("ip.refresh", "IDP_RATELIMIT_SESSION"),
    "api.logout": ("ip.logout", "IDP_RATELIMIT_SESSION"),
    "api.verify_token": ("ip.verify_token", "IDP_RATELIMIT_VERIFY"),
    "oauth.token": ("ip.oauth_token", "IDP_RATELIMIT_OAUTH"),
    "oauth.revoke": ("ip.oauth_revoke", "IDP_RATELIMIT_OAUTH"),
    "oauth.introspect": ("ip.oauth_introspect", "IDP_RATELIMIT_OAUTH"),
}


def init_app(app: Flask, settings: dict[str, Any]) -> Limiter:
    """Create the application's limiter and apply the route limits to registered views."""
    enabled = settings["IDP_RATELIMIT_ENABLED"]
    limiter = Limiter(
        key_func=request_source,
        app=app,
        storage_uri=settings["IDP_REDIS_URL"] or "memory://",
        strategy="moving-window",
        key_prefix=settings["IDP_RATELIMIT_PREFIX"],
        headers_enabled=True,
        # flask-limiter would put Retry-After on every answer; RFC 9110 gives it to 429 (and
        # 503/3xx) only, and our 429 sets it itself.
        header_name_mapping={HeaderNames.RETRY_AFTER: "X-RateLimit-Retry-After"},
        swallow_errors=True,
        in_memory_fallback_enabled=True,
        enabled=enabled,
    )
    if enabled:
        # Disabled, flask-limiter would still run each wrapped view's check (to find nothing):
        # a limiter that is off costs nothing instead.
        for endpoint, (scope, setting) in ROUTE_LIMITS.items():
            view = app.view_functions[endpoint]
            app.view_functions[endpoint] = limiter.limit(settings[setting], scope=scope)(view)
    app.extensions[EXTENSION_KEY] = limiter
    if not enabled:
        log.warning("rate limiting is DISABLED (IDP_RATELIMIT_ENABLED=false)")
    return limiter


def request_source() -> str:
    """The current client's key for per-address limits (after the trusted-proxy rule)."""
    return source_of(request.remote_addr, current_app.config["IDP"]["IDP_IPV6_PREFIX_LENGTH"])


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
