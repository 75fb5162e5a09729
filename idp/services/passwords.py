"""Password hashing (Argon2id) and the password policy."""

from __future__ import annotations

import gzip
import secrets
import threading
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# NIST SP 800-63B asks for at least 64 characters to be allowed; anything longer than this is
# refused before it reaches Argon2, so a megabyte "password" costs us nothing.
MAX_PASSWORD_LENGTH = 128
MIN_PASSWORD_LENGTH = 8
COMMON_PASSWORDS = Path(__file__).resolve().parent.parent / "data" / "common-passwords.txt.gz"


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of breached and common passwords, lowercased (see idp/data/README.md)."""
    with gzip.open(COMMON_PASSWORDS, "rt", encoding="utf-8") as handle:
        return frozenset(line.strip() for line in handle if line.strip())


def normalized(password: str) -> str:
    """NFKC, as NIST SP 800-63B 5.1.1.2 asks: one password, however a keyboard composes it.

    "é" typed as one code point (Windows) or as "e" + a combining accent (macOS) is the same
    password, and "Password1" typed in full-width letters is "Password1", on the common list.
    """
    return unicodedata.normalize("NFKC", password)


def password_policy_errors(password: str, email: str | None = None) -> list[str]:
    """Return what the password lacks under the policy; an empty list means it is acceptable."""
    password = normalized(password)
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
    folded = password.casefold()
    if folded.strip() in common_passwords():
        problems.append("This password is too common.")
    if email:
        address = email.casefold()
        local_part = address.rpartition("@")[0]
        if address in folded or (len(local_part) >= 4 and local_part in folded):
            problems.append("Password must not contain your email address.")
    return problems


@dataclass(frozen=True)
class PasswordCheck:
    matched: bool
    rehash: bool  # other parameters, or a hash of the password as typed before normalisation


class PasswordService:
    """Hash and verify passwords with argon2id at the configured cost."""

    def __init__(
        self, time_cost: int, memory_cost: int, parallelism: int, max_concurrent: int = 2
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism
        )
        # Each hash holds memory_cost KiB; bounding concurrent hashes bounds a worker's memory
        # under a login flood (requests queue here instead of exhausting RAM).
        self._slots = threading.BoundedSemaphore(max_concurrent)
        # Verified against when the account does not exist, so that an unknown email costs
        # the same time as a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """Return an argon2id hash of the (normalised) password."""
        with self._slots:
            return self._hasher.hash(normalized(password))

    def check(self, password_hash: str | None, password: str) -> PasswordCheck:
        """Check a password, and say whether its stored hash should be made again.

        With no hash, burn the same time and say it did not match.

        The normalised form is tried first. A password that normalisation changes is also tried
        as typed: a hash stored before passwords were normalised is of that form. Which forms
        are tried depends on the input only, never on the account, so it reveals nothing.
        """
        stored = password_hash or self._dummy_hash
        form = normalized(password)
        if self._matches(stored, form):
            return PasswordCheck(password_hash is not None, self.needs_rehash(stored))
        if form != password and self._matches(stored, password):
            return PasswordCheck(password_hash is not None, rehash=True)
        return PasswordCheck(False, rehash=False)

    def _matches(self, stored: str, password: str) -> bool:
        try:
            with self._slots:
                return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether a stored hash was made with other parameters than the current ones."""
        return self._hasher.check_needs_rehash(password_hash)
