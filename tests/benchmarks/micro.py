"""In-process rates of the expensive primitives: Argon2 verify, RS256 sign and verify."""

from __future__ import annotations

import multiprocessing
import secrets
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from joserfc import jwt

from idp.services.keys import ALGORITHM, KeyStore
from tests.benchmarks.params import PASSWORD, Argon2Params


@dataclass(frozen=True)
class Argon2Rate:
    params: Argon2Params
    processes: int
    verifies: int
    per_second: float  # all processes together
    cpu_seconds: float  # their CPU time while verifying

    @property
    def per_cpu_second(self) -> float:
        """Verifies per CPU-second the processes used: per_second / cores on an idle machine,
        and still right when other processes take some of the cores."""
        if self.cpu_seconds <= 0:
            return self.per_second / self.processes
        return self.verifies / self.cpu_seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "params": self.params.label(),
            "processes": self.processes,
            "verifies": self.verifies,
            "per_second": round(self.per_second, 2),
            "per_cpu_second": round(self.per_cpu_second, 2),
            "measured_cpu_seconds": round(self.cpu_seconds, 2),
        }


def combined(first: Argon2Rate, second: Argon2Rate) -> Argon2Rate:
    """Two measurements of the same parameters as one: counts added, rates averaged."""
    return Argon2Rate(
        params=first.params,
        processes=first.processes,
        verifies=first.verifies + second.verifies,
        per_second=(first.per_second + second.per_second) / 2,
        cpu_seconds=first.cpu_seconds + second.cpu_seconds,
    )


def argon2_verify_rate(params: Argon2Params, processes: int, duration: float) -> Argon2Rate:
    """Verify one hash in a loop in `processes` processes at once; return the total rate."""
    # fork: a spawned child would spend seconds importing idp again before it could start.
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=_verify_loop, args=(params, duration, barrier, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=duration + 60) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    return Argon2Rate(
        params=params,
        processes=processes,
        verifies=sum(count for count, _, _ in outcomes),
        per_second=sum(count / elapsed for count, elapsed, _ in outcomes),
        cpu_seconds=sum(cpu for _, _, cpu in outcomes),
    )


def _verify_loop(
    params: Argon2Params, duration: float, barrier: Barrier, results: multiprocessing.Queue
) -> None:
    hasher = params.hasher()
    stored = hasher.hash(PASSWORD)
    barrier.wait()  # every process starts together: none gets the machine to itself
    started, cpu_started = time.perf_counter(), time.process_time()
    count = 0
    while time.perf_counter() - started < duration:
        hasher.verify(stored, PASSWORD)
        count += 1
    results.put((count, time.perf_counter() - started, time.process_time() - cpu_started))


@dataclass(frozen=True)
class RS256Rates:
    sign_per_second: float
    verify_per_second: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "sign_per_second": round(self.sign_per_second, 1),
            "verify_per_second": round(self.verify_per_second, 1),
        }


def rs256_rates(keys_dir: Path, duration: float) -> RS256Rates:
    """Sign and verify access-token-shaped JWTs with the server's key, in this one process."""
    kid, key = KeyStore(str(keys_dir)).signing_key()
    header = {"alg": ALGORITHM, "typ": "at+jwt", "kid": kid}
    now = int(time.time())
    claims = {
        "iss": "http://127.0.0.1",
        "sub": "00000000-0000-4000-8000-000000000000",
        "aud": "http://127.0.0.1",
        "exp": now + 3600,
        "iat": now,
        "jti": secrets.token_urlsafe(16),
        "client_id": "idp-api",
        "scope": "profile email",
        "sid": secrets.token_urlsafe(24),
    }
    token = jwt.encode(header, claims, key, algorithms=[ALGORITHM])
    sign = _rate(lambda: jwt.encode(header, claims, key, algorithms=[ALGORITHM]), duration)
    verify = _rate(lambda: jwt.decode(token, key, algorithms=[ALGORITHM]), duration)
    return RS256Rates(sign, verify)


@dataclass(frozen=True)
class Micro:
    """Every micro-benchmark of a run; Argon2 only at the parameters a scenario needs."""

    rs256: RS256Rates
    argon2: Argon2Rate | None = None
    argon2_keycloak: Argon2Rate | None = None

    def as_dict(self) -> dict[str, Any]:
        found = {"rs256": self.rs256.as_dict()}
        for name, rate in (("argon2", self.argon2), ("argon2_keycloak", self.argon2_keycloak)):
            if rate is not None:
                found[name] = rate.as_dict()
        return found


def _rate(operation: Any, duration: float) -> float:
    started = time.perf_counter()
    count = 0
    while (elapsed := time.perf_counter() - started) < duration:
        operation()
        count += 1
    return count / elapsed
