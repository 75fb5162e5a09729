"""Signing keys in a folder shared by every worker and instance.

The folder holds one ``<kid>.pem`` per key (mode 0600) and ``manifest.json`` with each key's
status. Writers take an exclusive ``flock`` and replace files atomically; readers re-read the
manifest when it changes, checked at most every ``reload_interval`` seconds, so a rotation done
by one admin command reaches every process without a restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from joserfc.jwk import RSAKey

from idp import audit
from idp.clock import utcnow
from idp.errors import SigningKeyError

ALGORITHM = "RS256"
KEY_SIZE = 2048
MANIFEST = "manifest.json"

STAGED = "staged"  # published in JWKS, not yet signing
ACTIVE = "active"  # signing and published; exactly one
VERIFY_ONLY = "verify-only"  # no longer signing, still published so its tokens verify
RETIRED = "retired"  # gone from JWKS, private key deleted; its tokens fail
PUBLISHED = (STAGED, ACTIVE, VERIFY_ONLY)


class KeyCommandError(Exception):
    """An admin asked for a key change that would break the server."""


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    status: str
    created_at: str


@dataclass
class _Snapshot:
    stamp: tuple[int, int, int] | None = None
    infos: list[KeyInfo] = field(default_factory=list)
    keys: dict[str, RSAKey] = field(default_factory=dict)  # published keys only
    active_kid: str | None = None
    jwks_body: bytes = b'{"keys":[]}'
    jwks_etag: str = ""


class KeyStore:
    """Load, publish and rotate RS256 signing keys kept in one folder."""

    def __init__(self, keys_dir: str, reload_interval: float = 5.0) -> None:
        self.path = Path(keys_dir)
        self.reload_interval = reload_interval
        self._lock = threading.Lock()
        self._snapshot = _Snapshot()
        self._checked_at = float("-inf")

    # -- reading -----------------------------------------------------------------------------

    def signing_key(self) -> tuple[str, RSAKey]:
        """Return the kid and private key new tokens are signed with."""
        snap = self._current()
        if snap.active_kid is None or snap.active_kid not in snap.keys:
            raise SigningKeyError()
        return snap.active_kid, snap.keys[snap.active_kid]

    def verification_key(self, kid: str) -> RSAKey | None:
        """Return the published key with this kid, or None for unknown and retired kids."""
        return self._current().keys.get(kid)

    def jwks(self) -> tuple[bytes, str]:
        """Return the serialised JWK Set of published public keys and its ETag."""
        snap = self._current()
        return snap.jwks_body, snap.jwks_etag

    def list_keys(self) -> list[KeyInfo]:
        """Return every key in the manifest, newest first."""
        return sorted(self._current().infos, key=lambda info: info.created_at, reverse=True)

    def _current(self) -> _Snapshot:
        if time.monotonic() - self._checked_at < self.reload_interval:
            return self._snapshot
        with self._lock:
            if time.monotonic() - self._checked_at >= self.reload_interval:
                stamp = self._manifest_stamp()
                if stamp != self._snapshot.stamp:
                    self._snapshot = self._load(stamp)
                self._checked_at = time.monotonic()
        return self._snapshot

    def reload(self) -> None:
        """Forget the cached state so the next read goes to disk."""
        with self._lock:
            self._checked_at = float("-inf")
            self._snapshot = _Snapshot()

    def _manifest_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = (self.path / MANIFEST).stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _read_manifest(self) -> list[KeyInfo]:
        try:
            data = json.loads((self.path / MANIFEST).read_text())
        except FileNotFoundError:
            return []
        return [KeyInfo(k["kid"], k["status"], k["created_at"]) for k in data["keys"]]

    def _load(self, stamp: tuple[int, int, int] | None) -> _Snapshot:
        infos = self._read_manifest()
        keys: dict[str, RSAKey] = {}
        active = None
        for info in infos:
            if info.status not in PUBLISHED:
                continue
            pem = (self.path / f"{info.kid}.pem").read_bytes()
            keys[info.kid] = RSAKey.import_key(
                pem, parameters={"kid": info.kid, "use": "sig", "alg": ALGORITHM}
            )
            if info.status == ACTIVE:
                active = info.kid
        public = {"keys": [key.as_dict(private=False) for key in keys.values()]}
        body = json.dumps(public, separators=(",", ":"), sort_keys=True).encode()
        etag = hashlib.sha256(body).hexdigest()[:32]
        return _Snapshot(stamp, infos, keys, active, body, etag)

    # -- writing (admin commands and first start) -------------------------------------------

    def ensure_signing_key(self) -> str | None:
        """Create the first key when the folder has none; return its kid if one was made.

        Safe when several workers start at once: the check and the write happen under the lock.
        """
        if self._read_manifest():
            return None
        with self._exclusive():
            if self._read_manifest():
                return None
            return self._add_key(ACTIVE, [])

    def rotate(self, staged: bool = False) -> str:
        """Create a new key; it signs at once unless staged. Return its kid."""
        with self._exclusive():
            infos = self._read_manifest()
            if not staged:
                infos = [_demote_active(info) for info in infos]
            kid = self._add_key(STAGED if staged else ACTIVE, infos)
        audit.record("key.rotated", "success", kid=kid, staged=staged)
        return kid

    def activate(self, kid: str) -> None:
        """Make a published key the signing key; the previous one stays published."""
        with self._exclusive():
            infos = self._read_manifest()
            target = _find(infos, kid)
            if target.status not in (STAGED, VERIFY_ONLY):
                raise KeyCommandError(
                    f"key {kid} is {target.status}; "
                    "only staged or verify-only keys can be activated"
                )
            infos = [
                KeyInfo(i.kid, ACTIVE, i.created_at) if i.kid == kid else _demote_active(i)
                for i in infos
            ]
            self._write_manifest(infos)
        audit.record("key.activated", "success", kid=kid)

    def retire(self, kid: str) -> None:
        """Withdraw a key from JWKS and delete its private key; its tokens stop verifying."""
        with self._exclusive():
            infos = self._read_manifest()
            target = _find(infos, kid)
            if target.status == ACTIVE:
                raise KeyCommandError(
                    f"key {kid} is the signing key; rotate or activate another key first"
                )
            if target.status == RETIRED:
                raise KeyCommandError(f"key {kid} is already retired")
            infos = [KeyInfo(i.kid, RETIRED, i.created_at) if i.kid == kid else i for i in infos]
            self._write_manifest(infos)
            (self.path / f"{kid}.pem").unlink(missing_ok=True)
        audit.record("key.retired", "success", kid=kid)

    def _add_key(self, status: str, infos: list[KeyInfo]) -> str:
        key = RSAKey.generate_key(KEY_SIZE, auto_kid=False)
        kid = key.thumbprint()
        # The private key must be on disk before any manifest names it.
        _atomic_write(self.path / f"{kid}.pem", key.as_pem(private=True))
        infos = [*infos, KeyInfo(kid, status, utcnow().isoformat(timespec="seconds"))]
        self._write_manifest(infos)
        return kid

    def _write_manifest(self, infos: list[KeyInfo]) -> None:
        body = {"keys": [info.__dict__ for info in infos]}
        _atomic_write(self.path / MANIFEST, json.dumps(body, indent=2).encode())
        self._checked_at = float("-inf")

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _find(infos: list[KeyInfo], kid: str) -> KeyInfo:
    for info in infos:
        if info.kid == kid:
            return info
    raise KeyCommandError(f"no key with kid {kid}")


def _demote_active(info: KeyInfo) -> KeyInfo:
    return KeyInfo(info.kid, VERIFY_ONLY, info.created_at) if info.status == ACTIVE else info


def _atomic_write(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only, replacing any old one in a single rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
