"""Random secrets and their stored digests."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret() -> str:
    """Return a URL-safe secret with 256 bits of entropy."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """Return the SHA-256 hex digest stored in place of a high-entropy secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def digest_matches(secret: str, stored_digest: str) -> bool:
    """Compare a presented secret with a stored digest in constant time."""
    return hmac.compare_digest(digest(secret), stored_digest)
