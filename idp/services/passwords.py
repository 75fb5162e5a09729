"""Password hashing (Argon2id) and the password policy."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# NIST SP 800-63B asks for at least 64 characters to be allowed; anything longer than this is
# refused before it reaches Argon2, so a megabyte "password" costs us nothing.
MAX_PASSWORD_LENGTH = 128
MIN_PASSWORD_LENGTH = 8


def password_policy_errors(password: str) -> list[str]:
    """Return what the password lacks under the policy; an empty list means it is acceptable."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"Password must be at least {MIN_PASSWORD_LENGTH} characters long.")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"Password must be at most {MAX_PASSWORD_LENGTH} characters long.")
    if not any(ch.isupper() for ch in password):
        problems.append("Password must contain an uppercase letter.")
    if not any(ch.islower() for ch in password):
        problems.append("Password must contain a lowercase letter.")
    if not any(ch.isdigit() for ch in password):
        problems.append("Password must contain a digit.")
    return problems


class PasswordService:
    """Hash and verify passwords with argon2id at the configured cost."""

    def __init__(self, time_cost: int, memory_cost: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism
        )
        # Verified against when the account does not exist, so that an unknown email costs
        # the same time as a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """Return an argon2id hash of the password."""
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Check a password; with no hash, burn the same time and return False."""
        try:
            return self._hasher.verify(password_hash or self._dummy_hash, password) and (
                password_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether a stored hash was made with other parameters than the current ones."""
        return self._hasher.check_needs_rehash(password_hash)
