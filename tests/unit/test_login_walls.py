"""LoginWalls and LoginAttempt: per-source refusal up front, the account-wide wall, sites.

Real Throttles over process memory, with small limits: an account is under attack after
3 failures, a source is walled after 10 (so 2 failures under attack, at 5 each).
"""

from __future__ import annotations

import json

import pytest

from idp.errors import InvalidCredentials, TooManyFailedLogins
from idp.services.login_walls import FAILURE_COST_UNDER_ATTACK, LoginWalls
from idp.services.throttle import Throttle

ACCOUNT = "ada@example.com"
SOURCE_A, SOURCE_B = "203.0.113.5", "198.51.100.7"
SITE = "2001:db8:1::/48"


@pytest.fixture
def walls(app):
    # Audit lines (email_hash) need the app; the walls themselves need nothing of it.
    with app.app_context():
        yield LoginWalls(
            Throttle("user.login", "3 per hour"), Throttle("user.login_source", "10 per hour")
        )


def fail_once(walls: LoginWalls, source: str | None, site: str | None = None) -> type:
    """One failed login through the whole protocol; returns the error class it ended with."""
    attempt = walls.attempt(ACCOUNT, ACCOUNT, source, site)
    try:
        attempt.refuse_if_source_is_over()
        attempt.fail("bad_password", "user-1")
    except (InvalidCredentials, TooManyFailedLogins) as exc:
        return type(exc)
    raise AssertionError("fail() must raise")


def under_attack(walls: LoginWalls) -> None:
    for n in range(3):  # from many addresses, none of them SOURCE_A or SOURCE_B
        assert fail_once(walls, f"192.0.2.{n}") is InvalidCredentials
    assert walls.attempt(ACCOUNT, ACCOUNT, SOURCE_A, None).under_attack


def test_a_failure_answers_401_and_counts_once_on_each_wall(walls):
    assert fail_once(walls, SOURCE_A) is InvalidCredentials
    assert walls.per_account.hit(ACCOUNT, 2)  # 1 + 2 = the limit of 3
    assert walls.per_source.hit(f"{ACCOUNT} {SOURCE_A}", 9)  # 1 + 9 = the limit of 10


def test_a_source_over_its_wall_is_refused_before_the_password_is_checked(walls):
    walls = LoginWalls(Throttle("user.login", "100 per hour"), walls.per_source)
    assert [fail_once(walls, SOURCE_A) for _ in range(10)] == [InvalidCredentials] * 10
    attempt = walls.attempt(ACCOUNT, ACCOUNT, SOURCE_A, None)
    with pytest.raises(TooManyFailedLogins) as refused:
        attempt.refuse_if_source_is_over()
    assert 1 <= refused.value.retry_after <= 3600
    # Another source, and the same source for another account, are not walled.
    walls.attempt(ACCOUNT, ACCOUNT, SOURCE_B, None).refuse_if_source_is_over()
    walls.attempt(
        "grace@example.com", "grace@example.com", SOURCE_A, None
    ).refuse_if_source_is_over()


def test_the_account_wall_never_refuses_up_front(walls):
    under_attack(walls)
    # The owner, from a source of their own, reaches the password check.
    walls.attempt(ACCOUNT, ACCOUNT, SOURCE_B, None).refuse_if_source_is_over()


def test_under_attack_a_failure_answers_429_and_costs_its_source_more(walls, audit_output):
    under_attack(walls)
    assert FAILURE_COST_UNDER_ATTACK == 5
    assert [fail_once(walls, SOURCE_A) for _ in range(3)] == [
        TooManyFailedLogins,
        TooManyFailedLogins,
        TooManyFailedLogins,  # this one refused before the check: 2 guesses used 10
    ]
    lines = [json.loads(line) for line in audit_output.getvalue().splitlines()]
    assert [line["reason"] for line in lines][-3:] == ["bad_password", "bad_password", "throttled"]
    assert [line.get("under_attack") for line in lines][:4] == [False, False, False, True]


@pytest.mark.parametrize(("attacked", "neighbour_walled"), [(False, False), (True, True)])
def test_an_ipv6_site_is_walled_only_while_the_account_is_under_attack(
    walls, attacked, neighbour_walled
):
    if attacked:
        under_attack(walls)
    for _ in range(2):  # a /64 of the site fails twice (under attack: 10 on the site)
        fail_once(walls, "2001:db8:1:a::/64", SITE)
    neighbour = walls.attempt(ACCOUNT, ACCOUNT, "2001:db8:1:b::/64", SITE)
    assert len(neighbour.sources) == (2 if attacked else 1)
    if neighbour_walled:
        with pytest.raises(TooManyFailedLogins):
            neighbour.refuse_if_source_is_over()
    else:
        neighbour.refuse_if_source_is_over()


def test_without_a_source_only_the_account_wall_counts(walls):
    attempt = walls.attempt(ACCOUNT, ACCOUNT, None, SITE)
    assert attempt.sources == []
    for _ in range(3):
        assert fail_once(walls, None, SITE) is InvalidCredentials
    assert fail_once(walls, None) is TooManyFailedLogins  # now under attack
