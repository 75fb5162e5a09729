"""Seal small secrets at rest with AES-GCM under a key derived from IDP_SECRET_KEY.

Used for the mail outbox: a queued mail carries a live link, and a database dump or backup
must not hand that link to whoever reads it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


class Unsealable(Exception):
    """The sealed bytes were damaged, moved to another row, or sealed under another secret."""


class Sealer:
    """Seal and open JSON values bound to a context string (the associated data)."""

    def __init__(self, secret: str, purpose: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode("utf-8")
        ).derive(secret.encode("utf-8"))
        self._aead = AESGCM(key)

    def seal(self, value: Any, bound_to: str) -> bytes:
        """Encrypt value's JSON; opening it needs the same bound_to."""
        nonce = os.urandom(NONCE_BYTES)
        plaintext = json.dumps(value, separators=(",", ":")).encode("utf-8")
        return nonce + self._aead.encrypt(nonce, plaintext, bound_to.encode("utf-8"))

    def open(self, sealed: bytes, bound_to: str) -> Any:
        """Decrypt and parse what seal() made, or raise Unsealable."""
        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        try:
            plaintext = self._aead.decrypt(nonce, ciphertext, bound_to.encode("utf-8"))
        except (InvalidTag, ValueError) as exc:
            raise Unsealable() from exc
        return json.loads(plaintext)
