"""Throttle: named limits counted per identifier, stored as digests, with a local fallback."""

from __future__ import annotations

import hashlib
import logging

import pytest
import redis
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from idp.rate_limits import current_strategy
from idp.services.throttle import Throttle
from tests.conftest import REDIS_URL

ADA = "ada@example.com"


def shared() -> tuple[MemoryStorage, MovingWindowRateLimiter]:
    storage = MemoryStorage()
    return storage, MovingWindowRateLimiter(storage)


def broken():
    raise redis.ConnectionError("storage down")


def test_a_throttle_counts_per_identifier_up_to_its_limit():
    throttle = Throttle("user.login", "3 per minute")
    assert [throttle.hit(ADA) for _ in range(4)] == [True, True, True, False]
    assert throttle.hit("grace@example.com")  # another identifier, its own count
    assert not throttle.allows(ADA)


def test_allows_does_not_count():
    throttle = Throttle("user.login", "2 per minute")
    assert all(throttle.allows(ADA) for _ in range(10))
    assert [throttle.hit(ADA) for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(
    ("costs", "outcomes"),
    [
        ([5], [True]),  # exactly the limit
        ([6], [False]),  # more than the whole limit at once
        ([4, 1, 1], [True, True, False]),
        ([1, 5], [True, False]),
    ],
)
def test_hit_with_a_cost_counts_it_as_that_many_events(costs, outcomes):
    throttle = Throttle("user.login_source", "5 per minute")
    assert [throttle.hit(ADA, cost) for cost in costs] == outcomes


def test_a_refused_hit_with_a_cost_takes_nothing():
    throttle = Throttle("user.login_source", "5 per minute")
    assert throttle.hit(ADA, 3)
    assert not throttle.hit(ADA, 3)
    assert throttle.hit(ADA, 2)  # the refused 3 left the remaining 2 alone


def test_resets_in_is_at_least_a_second_and_at_most_the_window():
    throttle = Throttle("user.login", "2 per minute")
    assert 1 <= throttle.resets_in(ADA) <= 61  # nothing counted yet
    throttle.hit(ADA, 2)
    assert 59 <= throttle.resets_in(ADA) <= 61


def test_a_disabled_throttle_always_allows_and_never_touches_storage():
    calls = []

    def strategy():
        calls.append(1)
        return broken()

    throttle = Throttle("user.login", "1 per minute", strategy=strategy, enabled=False)
    assert all(throttle.hit(ADA, 100) for _ in range(5))
    assert throttle.allows(ADA)
    assert calls == []


def test_when_the_strategy_fails_the_limit_holds_in_process(caplog):
    throttle = Throttle("user.login", "2 per minute", strategy=broken)
    with caplog.at_level(logging.WARNING, "idp.services.throttle"):
        assert [throttle.hit(ADA) for _ in range(3)] == [True, True, False]
        assert not throttle.allows(ADA)
    assert "in-process fallback" in caplog.text
    assert throttle.resets_in(ADA) == 60  # the window, since the storage cannot say


def test_scope_and_prefix_keep_counters_apart_over_one_storage():
    _storage, strategy = shared()

    def throttle(scope: str, prefix: str) -> Throttle:
        return Throttle(scope, "1 per minute", strategy=lambda: strategy, prefix=prefix)

    assert throttle("user.login", "app-a").hit(ADA)
    assert not throttle("user.login", "app-a").hit(ADA)  # another instance, the same counter
    assert throttle("user.login_source", "app-a").hit(ADA)
    assert throttle("user.login", "app-b").hit(ADA)


def test_identifiers_are_stored_only_as_digests():
    storage, strategy = shared()
    Throttle("user.login", "5 per minute", strategy=lambda: strategy).hit(ADA)
    keys = " ".join(storage.events) + " ".join(storage.storage)
    assert hashlib.sha256(ADA.encode()).hexdigest()[:32] in keys
    assert "ada" not in keys


@pytest.mark.redis
def test_in_redis_two_workers_share_one_counter_and_no_address_is_stored(make_app):
    app = make_app(IDP_RATELIMIT_ENABLED=True)  # a disabled limiter has no storage
    prefix = app.config["IDP"].ratelimit_prefix
    with app.app_context():
        workers = [
            Throttle("user.login", "3 per minute", strategy=current_strategy, prefix=prefix)
            for _ in range(2)
        ]
        assert [workers[n % 2].hit(ADA) for n in range(4)] == [True, True, True, False]
    keys = redis.Redis.from_url(REDIS_URL).keys(f"*{prefix}*")
    assert keys
    assert not any(b"ada" in key for key in keys)
