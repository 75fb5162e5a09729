"""Named limits counted per identifier (scope.action, e.g. `user.login` per email address).

Route limits per client address are flask-limiter's (idp.rate_limits); these are the limits
a service applies to something other than the address, over the same storage.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter, RateLimiter

from idp import metrics

log = logging.getLogger(__name__)


class Throttle:
    """Count events per identifier under one limit; identifiers are stored only as digests."""

    def __init__(
        self,
        scope: str,
        limit: str,
        strategy: Callable[[], RateLimiter] | None = None,
        enabled: bool = True,
        prefix: str = "",
    ) -> None:
        self.scope = scope
        self.prefix = prefix
        self.limit: RateLimitItem = parse(limit)
        self.enabled = enabled
        self._strategy = strategy
        # Used when the shared storage (Redis) fails: limits keep holding, per process.
        self._fallback = MovingWindowRateLimiter(MemoryStorage())

    def _key(self, identifier: str) -> str:
        return hashlib.sha256(identifier.encode("utf-8")).hexdigest()[:32]

    def _call(self, method: str, identifier: str, cost: int = 1) -> bool:
        key = self._key(identifier)
        args = (self.limit, self.prefix, self.scope, key)
        if self._strategy is not None:
            try:
                return getattr(self._strategy(), method)(*args, cost=cost)
            except Exception:
                metrics.count_redis_error("rate_limits")
                log.warning("rate-limit storage failed; using the in-process fallback")
        return getattr(self._fallback, method)(*args, cost=cost)

    def allows(self, identifier: str) -> bool:
        """Whether another event is allowed now, without counting one."""
        return not self.enabled or self._call("test", identifier)

    def hit(self, identifier: str, cost: int = 1) -> bool:
        """Count an event as `cost` events; False when it went over the limit."""
        return not self.enabled or self._call("hit", identifier, cost)

    def resets_in(self, identifier: str) -> int:
        """Seconds until the identifier is allowed again (at least 1)."""
        key = self._key(identifier)
        try:
            strategy = self._strategy() if self._strategy is not None else self._fallback
            reset_at, _remaining = strategy.get_window_stats(
                self.limit, self.prefix, self.scope, key
            )
        except Exception:
            return self.limit.get_expiry()
        return max(1, int(reset_at - time.time()) + 1)
