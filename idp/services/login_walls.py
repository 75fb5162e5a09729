"""The walls against password guessing: failed logins counted per account and per source.

Both walls are counted on failure, per address whether or not an account has it, so every
address gets the same answers. The per-source wall (`user.login_source`: one account from one
client address, or IPv6 network) refuses before the password is checked. The account-wide wall
(`user.login`) never refuses a correct password by itself: once it is full the account is under
attack, every failure answers 429 and costs its source (and an IPv6 source's whole /48 site)
FAILURE_COST_UNDER_ATTACK failures, so each attacking source gets a few guesses per window while
the owner, from a source of their own, signs in. README "Security" says why.
"""

from __future__ import annotations

from typing import NoReturn

from idp import audit
from idp.errors import InvalidCredentials, TooManyFailedLogins
from idp.services.throttle import Throttle

# While an account's wall is full, a failure counts this many times against its source: with
# the default 10 per 15 minutes, an attacking source gets two guesses per window.
FAILURE_COST_UNDER_ATTACK = 5


class LoginAttempt:
    """One login against the walls: refused up front, or counted when it fails."""

    def __init__(self, walls: LoginWalls, account_key: str, email: str, sources: list[str]):
        self.walls = walls
        self.account_key = account_key
        self.email = email
        self.sources = sources
        self.under_attack = not walls.per_account.allows(account_key)

    def refuse_if_source_is_over(self) -> None:
        """429 before the password is checked when this source used up its failures."""
        for key in self.sources:
            if not self.walls.per_source.allows(key):
                audit.record("login.failure", "denied", reason="throttled", email=self.email)
                raise TooManyFailedLogins(self.walls.per_source.resets_in(key))

    def fail(self, reason: str, user_id: str | None = None, outcome: str = "failure") -> NoReturn:
        """Count a failure on every wall and refuse: 401, or 429 while under attack."""
        audit.record(
            "login.failure",
            outcome,
            user_id=user_id,
            reason=reason,
            email=self.email,
            under_attack=self.under_attack,
        )
        self.walls.per_account.hit(self.account_key)
        cost = FAILURE_COST_UNDER_ATTACK if self.under_attack else 1
        for key in self.sources:
            self.walls.per_source.hit(key, cost)
        if self.under_attack:
            raise TooManyFailedLogins(self.walls.per_account.resets_in(self.account_key))
        raise InvalidCredentials()


class LoginWalls:
    """The two failed-login throttles of one application."""

    def __init__(self, per_account: Throttle, per_source: Throttle) -> None:
        self.per_account = per_account
        self.per_source = per_source

    def attempt(
        self, account_key: str, email: str, source: str | None, site: str | None
    ) -> LoginAttempt:
        """Start a login for an account key (its canonical address) from a client source.

        `source` is the client as limits count it (an IPv6 client by its network), `site` an
        IPv6 client's /48 (None for IPv4); see idp.client_address. A site is walled only while
        the account is under attack.
        """
        sources = [f"{account_key} {source}"] if source else []
        attempt = LoginAttempt(self, account_key, email, sources)
        if attempt.under_attack and site:
            sources.append(f"{account_key} site {site}")
        return attempt
