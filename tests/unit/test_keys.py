"""KeyStore on a real folder; the `flask keys ...` commands are tests/cli/test_keys_cli.py."""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from idp.errors import SigningKeyError
from idp.services.keys import (
    ACTIVE,
    MANIFEST,
    RETIRED,
    STAGED,
    VERIFY_ONLY,
    KeyCommandError,
    KeyStore,
)

PUBLIC_RSA_MEMBERS = {"kty", "n", "e", "kid", "use", "alg"}
PRIVATE_RSA_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth"}


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def rfc7638_thumbprint(pem: bytes) -> str:
    """The RFC 7638 SHA-256 thumbprint of an RSA key, computed without joserfc."""
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    numbers = private.public_key().public_numbers()
    members = {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def manifest(path: Path) -> dict[str, str]:
    data = json.loads((path / MANIFEST).read_text())
    return {entry["kid"]: entry["status"] for entry in data["keys"]}


def jwks_kids(store: KeyStore) -> set[str]:
    body, _ = store.jwks()
    return {key["kid"] for key in json.loads(body)["keys"]}


def pem_files(path: Path) -> set[str]:
    return {p.stem for p in path.glob("*.pem")}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- first key ------------------------------------------------------------------------------


def test_first_key_is_written_private_with_a_manifest(tmp_path):
    folder = tmp_path / "keys"
    store = KeyStore(str(folder), reload_interval=1)

    kid = store.ensure_signing_key()

    assert kid is not None
    assert mode(folder) == 0o700
    assert pem_files(folder) == {kid}
    assert mode(folder / f"{kid}.pem") == 0o600
    assert mode(folder / MANIFEST) == 0o600
    assert manifest(folder) == {kid: ACTIVE}
    assert store.signing_key()[0] == kid
    assert [info.kid for info in store.list_keys()] == [kid]
    # Nothing left behind by the atomic writes.
    assert not list(folder.glob(".tmp-*"))


def test_a_second_call_keeps_the_existing_key(tmp_path):
    store = KeyStore(str(tmp_path), reload_interval=1)
    kid = store.ensure_signing_key()

    assert store.ensure_signing_key() is None
    assert KeyStore(str(tmp_path)).ensure_signing_key() is None
    assert manifest(tmp_path) == {kid: ACTIVE}
    assert pem_files(tmp_path) == {kid}


def test_kid_is_the_rfc7638_thumbprint_of_the_public_key(tmp_path):
    store = KeyStore(str(tmp_path), reload_interval=1)
    kid = store.ensure_signing_key()
    new_kid = store.rotate()

    for each in (kid, new_kid):
        assert each == rfc7638_thumbprint((tmp_path / f"{each}.pem").read_bytes())
    assert kid != new_kid


def test_empty_folder_has_no_signing_key(tmp_path):
    store = KeyStore(str(tmp_path), reload_interval=1)
    with pytest.raises(SigningKeyError):
        store.signing_key()
    assert json.loads(store.jwks()[0]) == {"keys": []}


# -- JWKS -----------------------------------------------------------------------------------


def test_jwks_holds_only_public_members(tmp_path):
    store = KeyStore(str(tmp_path), reload_interval=1)
    first = store.ensure_signing_key()
    staged = store.rotate(staged=True)

    body, etag = store.jwks()
    keys = json.loads(body)["keys"]

    assert {key["kid"] for key in keys} == {first, staged}
    for key in keys:
        assert set(key) == PUBLIC_RSA_MEMBERS, key
        assert not PRIVATE_RSA_MEMBERS & set(key)
        assert key["kty"] == "RSA"
        assert key["use"] == "sig"
        assert key["alg"] == "RS256"
        pem = (tmp_path / f"{key['kid']}.pem").read_bytes()
        numbers = serialization.load_pem_private_key(pem, None).public_key().public_numbers()
        assert key["n"] == _b64url_uint(numbers.n)
        assert key["e"] == _b64url_uint(numbers.e)
    assert b"PRIVATE" not in body
    assert etag


def test_jwks_etag_changes_with_the_key_set(tmp_path):
    store = KeyStore(str(tmp_path), reload_interval=1)
    store.ensure_signing_key()
    _, before = store.jwks()
    assert store.jwks()[1] == before

    store.rotate()

    assert store.jwks()[1] != before


# -- rotation -------------------------------------------------------------------------------


def test_rotate_signs_with_the_new_key_and_keeps_the_old_one_published(tmp_path):
    store = KeyStore(str(tmp_path), reload_interval=1)
    old = store.ensure_signing_key()

    new = store.rotate()

    assert new != old
    assert store.signing_key()[0] == new
    assert manifest(tmp_path) == {old: VERIFY_ONLY, new: ACTIVE}
    assert jwks_kids(store) == {old, new}
    assert store.verification_key(old) is not None
    assert store.verification_key(new) is not None
    assert pem_files(tmp_path) == {old, new}
    assert mode(tmp_path / f"{new}.pem") == 0o600
    assert {info.kid: info.status for info in store.list_keys()} == {
        old: VERIFY_ONLY,
        new: ACTIVE,
    }


def test_only_one_key_is_ever_active(tmp_path):
    store = KeyStore(str(tmp_path), reload_interval=1)
    store.ensure_signing_key()
    for _ in range(3):
        store.rotate()
    statuses = list(manifest(tmp_path).values())
    assert statuses.count(ACTIVE) == 1
    assert statuses.count(VERIFY_ONLY) == 3


def test_staged_key_is_published_but_does_not_sign_until_activated(tmp_path):
    store = KeyStore(str(tmp_path), reload_interval=1)
    old = store.ensure_signing_key()

    staged = store.rotate(staged=True)

    assert store.signing_key()[0] == old
    assert manifest(tmp_path) == {old: ACTIVE, staged: STAGED}
    assert jwks_kids(store) == {old, staged}

    store.activate(staged)

    assert store.signing_key()[0] == staged
    assert manifest(tmp_path) == {old: VERIFY_ONLY, staged: ACTIVE}
    assert jwks_kids(store) == {old, staged}


def test_a_verify_only_key_can_be_activated_again(tmp_path):
    store = KeyStore(str(tmp_path), reload_interval=1)
    old = store.ensure_signing_key()
    new = store.rotate()

    store.activate(old)

    assert store.signing_key()[0] == old
    assert manifest(tmp_path) == {old: ACTIVE, new: VERIFY_ONLY}


def test_activate_refuses_the_active_unknown_and_retired_keys(tmp_path):
    store = KeyStore(str(tmp_path), reload_interval=1)
    old = store.ensure_signing_key()
    new = store.rotate()
    store.retire(old)
    before = (tmp_path / MANIFEST).read_bytes()

    for kid in (new, old, "no-such-kid"):
        with pytest.raises(KeyCommandError):
            store.activate(kid)

    assert (tmp_path / MANIFEST).read_bytes() == before
    assert store.signing_key()[0] == new


# -- retirement -----------------------------------------------------------------------------


def test_retire_withdraws_the_key_and_deletes_its_private_key(tmp_path):
    store = KeyStore(str(tmp_path), reload_interval=1)
    old = store.ensure_signing_key()
    new = store.rotate()

    store.retire(old)

    assert manifest(tmp_path) == {old: RETIRED, new: ACTIVE}
    assert jwks_kids(store) == {new}
    assert store.verification_key(old) is None
    assert pem_files(tmp_path) == {new}
    assert store.signing_key()[0] == new
    # A fresh reader (another process starting later) agrees.
    fresh = KeyStore(str(tmp_path), reload_interval=1)
    assert jwks_kids(fresh) == {new}
    assert fresh.verification_key(old) is None


def test_retire_a_staged_key(tmp_path):
    store = KeyStore(str(tmp_path), reload_interval=1)
    active = store.ensure_signing_key()
    staged = store.rotate(staged=True)

    store.retire(staged)

    assert manifest(tmp_path) == {active: ACTIVE, staged: RETIRED}
    assert jwks_kids(store) == {active}
    assert pem_files(tmp_path) == {active}


def test_retire_refuses_the_active_key(tmp_path):
    store = KeyStore(str(tmp_path), reload_interval=1)
    kid = store.ensure_signing_key()

    with pytest.raises(KeyCommandError, match="signing key"):
        store.retire(kid)

    assert manifest(tmp_path) == {kid: ACTIVE}
    assert pem_files(tmp_path) == {kid}
    assert jwks_kids(store) == {kid}


def test_retire_refuses_unknown_and_already_retired_kids(tmp_path):
    store = KeyStore(str(tmp_path), reload_interval=1)
    old = store.ensure_signing_key()
    new = store.rotate()
    store.retire(old)
    before = (tmp_path / MANIFEST).read_bytes()

    with pytest.raises(KeyCommandError, match="no key"):
        store.retire("no-such-kid")
    with pytest.raises(KeyCommandError, match="already retired"):
        store.retire(old)

    assert (tmp_path / MANIFEST).read_bytes() == before
    assert pem_files(tmp_path) == {new}


# -- several processes ----------------------------------------------------------------------


def test_another_instance_sees_a_rotation_within_its_reload_interval(tmp_path):
    admin = KeyStore(str(tmp_path), reload_interval=1)
    worker = KeyStore(str(tmp_path), reload_interval=1)
    old = admin.ensure_signing_key()
    assert worker.signing_key()[0] == old

    new = admin.rotate()
    rotated_at = time.monotonic()

    deadline = rotated_at + 2.5
    while worker.signing_key()[0] != new:
        assert time.monotonic() < deadline, "the worker never saw the rotation"
        time.sleep(0.05)
    assert time.monotonic() - rotated_at <= 1 + 0.5
    assert jwks_kids(worker) == {old, new}
    assert worker.verification_key(old) is not None

    admin.retire(old)
    time.sleep(1.1)
    assert worker.verification_key(old) is None
    assert jwks_kids(worker) == {new}


def test_another_instance_sees_a_staged_key_activated(tmp_path):
    admin = KeyStore(str(tmp_path), reload_interval=1)
    worker = KeyStore(str(tmp_path), reload_interval=1)
    old = admin.ensure_signing_key()
    staged = admin.rotate(staged=True)
    time.sleep(1.1)
    assert worker.signing_key()[0] == old
    assert jwks_kids(worker) == {old, staged}

    admin.activate(staged)
    time.sleep(1.1)

    assert worker.signing_key()[0] == staged


def _ensure_in_child(folder: str, barrier: Any, results: Any) -> None:
    store = KeyStore(folder, reload_interval=1)
    barrier.wait(timeout=30)
    created = store.ensure_signing_key()
    results.put((created, store.signing_key()[0]))


def test_workers_starting_at_once_create_exactly_one_key(tmp_path):
    folder = tmp_path / "keys"  # not even created yet, as on a first deploy
    workers = 4
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_ensure_in_child, args=(str(folder), barrier, results))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
    assert [process.exitcode for process in processes] == [0] * workers

    created = [kid for kid, _ in outcomes if kid is not None]
    assert len(created) == 1, outcomes
    (kid,) = created
    assert {signing for _, signing in outcomes} == {kid}
    assert manifest(folder) == {kid: ACTIVE}
    assert pem_files(folder) == {kid}
    assert not list(folder.glob(".tmp-*"))
