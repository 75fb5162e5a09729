"""A Redis copy of recent revocations, for when the database cannot answer.

The database is the source of truth and answers every verification while it is up: one query
already covers the denylist, the session and the user, so asking Redis first would only add a
round trip (measured: it cost more than it saved; README "Benchmarks"). While the database is
unreachable, Redis still knows which tokens, sessions and users were revoked: a token it knows
is refused with a definite 401 instead of a 503. It can only ever say "revoked", so a Redis that
restarts, is flushed, or is down can never make a revoked token valid.

Entries are written after the revocation commits, and live as long as an access token minted
before the revocation could: after that, `exp` refuses the token by itself.
"""

from __future__ import annotations

import logging
from datetime import datetime

import redis

from idp import metrics

log = logging.getLogger(__name__)

# A revocation check must not wait on a sick Redis: after this it falls through to the database.
REDIS_TIMEOUT = 0.25


class RevocationCache:
    """Mark revoked token ids, sessions and users in Redis; ask whether any of them is marked."""

    def __init__(self, redis_url: str | None, prefix: str, lifetime: int) -> None:
        self._redis = (
            redis.Redis.from_url(
                redis_url,
                socket_connect_timeout=REDIS_TIMEOUT,
                socket_timeout=REDIS_TIMEOUT,
            )
            if redis_url
            else None
        )
        self.prefix = f"{prefix}:revoked"
        self.lifetime = lifetime

    def token_revoked(self, jti: str, expires_at: int, now: datetime) -> None:
        """Record a denylisted access token until its exp."""
        ttl = max(1, expires_at - int(now.timestamp()))
        self._set({self._key("jti", jti): "1"}, min(ttl, self.lifetime))

    def sessions_revoked(self, session_ids: list[str]) -> None:
        """Record ended sessions: every access token naming them is refused."""
        self._set({self._key("sid", sid): "1" for sid in session_ids}, self.lifetime)

    def user_sessions_ended(self, user_id: str, valid_after: datetime) -> None:
        """Record that the user's tokens issued before valid_after are refused."""
        self._set({self._key("user", user_id): str(int(valid_after.timestamp()))}, self.lifetime)

    def refuses(self, claims: dict) -> bool:
        """True when a revocation of this token, its session or its user is known here."""
        if self._redis is None:
            return False
        keys = [self._key("jti", claims["jti"]), self._key("user", claims["sub"])]
        if "sid" in claims:
            keys.append(self._key("sid", claims["sid"]))
        try:
            jti, user, *sid = self._redis.mget(keys)
        except redis.RedisError as exc:
            metrics.count_redis_error("revocation_cache")
            log.warning("revocation cache unavailable (%s): using the database", type(exc).__name__)
            return False
        if jti is not None or any(value is not None for value in sid):
            return True
        return user is not None and claims["iat"] < int(user)

    def _set(self, entries: dict[str, str], ttl: int) -> None:
        if self._redis is None or not entries:
            return
        try:
            pipeline = self._redis.pipeline(transaction=False)
            for key, value in entries.items():
                pipeline.set(key, value, ex=ttl)
            pipeline.execute()
        except redis.RedisError as exc:
            metrics.count_redis_error("revocation_cache")
            # The revocation is committed in the database, which every check still reads.
            log.warning("revocation cache not updated (%s)", type(exc).__name__)

    def _key(self, kind: str, value: str) -> str:
        return f"{self.prefix}:{kind}:{value}"
