"""Settings the benchmark shares between seeding, the server and the micro-benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher

from idp.config import Settings

# Every seeded user has this password; the seeded hash is computed once and copied.
PASSWORD = "Bench-Password-7"
# The built-in client of /api/v1/auth (IDP_API_CLIENT_ID's default) that owns API sessions.
API_CLIENT_ID = "idp-api"


@dataclass(frozen=True)
class Argon2Params:
    """Argon2id cost parameters, as the IDP_ARGON2_* settings name them."""

    time_cost: int
    memory_cost: int  # KiB
    parallelism: int

    def hasher(self) -> PasswordHasher:
        return PasswordHasher(
            time_cost=self.time_cost, memory_cost=self.memory_cost, parallelism=self.parallelism
        )

    def env(self) -> dict[str, str]:
        return {
            "IDP_ARGON2_TIME_COST": str(self.time_cost),
            "IDP_ARGON2_MEMORY_COST": str(self.memory_cost),
            "IDP_ARGON2_PARALLELISM": str(self.parallelism),
        }

    @property
    def memory_mib(self) -> float:
        return self.memory_cost / 1024

    def label(self) -> str:
        return f"t={self.time_cost}, m={self.memory_cost} KiB, p={self.parallelism}"


# idp's defaults (Settings.argon2_* in idp/config.py): what a production server runs with.
DEFAULT_ARGON2 = Argon2Params(
    time_cost=Settings.argon2_time_cost,
    memory_cost=Settings.argon2_memory_cost,
    parallelism=Settings.argon2_parallelism,
)
# Keycloak's Argon2 defaults, for the login-keycloak scenario.
KEYCLOAK_ARGON2 = Argon2Params(time_cost=5, memory_cost=7168, parallelism=1)
