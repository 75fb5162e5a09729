"""Latency at a set load: `hey` (Debian's package) holding a fixed rate, not the most it can.

wrk sends as fast as the server answers, so its latencies are those of a saturated server.
Production runs below saturation: at a fixed share of the measured maximum, p99 says what a
client waits when the server has room, queueing behind the proxy included.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

HEY_TIMEOUT_MARGIN = 30


def hey_available() -> bool:
    return shutil.which("hey") is not None


@dataclass(frozen=True)
class Paced:
    scenario: str
    share: float  # of the measured maximum
    asked_rps: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "share": self.share,
            "asked_rps": round(self.asked_rps, 1),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p90_ms": round(self.p90_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "non_2xx": self.non_2xx,
        }


def run_hey(
    url: str,
    *,
    scenario: str,
    share: float,
    rate: float,
    seconds: int,
    connections: int,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | None = None,
    content_type: str | None = None,
) -> Paced:
    """`rate` requests per second in all, spread over `connections` workers, for `seconds`."""
    args = ["hey", "-z", f"{seconds}s", "-c", str(connections)]
    args += ["-q", f"{rate / connections:.3f}", "-m", method]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    if body is not None:
        args += ["-d", body]
    if content_type is not None:
        args += ["-T", content_type]
    done = subprocess.run(
        [*args, url],
        capture_output=True,
        text=True,
        timeout=seconds + HEY_TIMEOUT_MARGIN,
        check=True,
    )
    return _parse(done.stdout, scenario, share, rate)


def _parse(output: str, scenario: str, share: float, rate: float) -> Paced:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    percentiles = {
        int(p): float(seconds) * 1000
        for p, seconds in re.findall(r"^\s+(\d+)% in ([\d.]+) secs", output, re.M)
    }
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", output)}
    non_2xx = sum(n for code, n in statuses.items() if not 200 <= code < 300)
    errors = re.search(r"Error distribution:(.*)", output, re.S)
    if errors:
        non_2xx += sum(int(n) for n in re.findall(r"\[(\d+)\]", errors.group(1)))
    return Paced(
        scenario, share, rate, rps, percentiles[50], percentiles[90], percentiles[99], non_2xx
    )
