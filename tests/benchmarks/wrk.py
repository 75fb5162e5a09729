"""Drive wrk with a Lua script from lua/ and read the JSON line its done() prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"
RESULT_PREFIX = "BENCH_RESULT "
REQUEST_TIMEOUT = "5s"


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    non_2xx: int  # answered, but neither 2xx nor the scenario's expected status
    socket_errors: int  # connect, read and write errors and timeouts
    used: tuple[int, ...]  # pool entries each thread handed out (refresh tokens)
    dry: bool  # a thread ran out of pool entries

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str,
    script: str,
    *,
    connections: int,
    threads: int,
    duration: int,
    env: dict[str, str],
) -> WrkResult:
    """Run `wrk -s lua/SCRIPT` against `url` for `duration` seconds."""
    threads = max(1, min(threads, connections))
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration}s",
        "--timeout",
        REQUEST_TIMEOUT,
        "-s",
        str(LUA_DIR / script),
        url,
    ]
    full_env = {
        **os.environ,
        **env,
        "BENCH_LUA_DIR": str(LUA_DIR),
        "BENCH_THREADS": str(threads),
    }
    done = subprocess.run(
        command, env=full_env, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return parse_output(done.stdout)


def parse_output(stdout: str) -> WrkResult:
    """Read the `BENCH_RESULT {...}` line that lua/common.lua's done() writes."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            data = json.loads(line[len(RESULT_PREFIX) :])
            break
    else:
        raise RuntimeError(f"no {RESULT_PREFIX.strip()} line in wrk's output:\n{stdout}")
    return WrkResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        non_2xx=data["non_2xx"],
        socket_errors=sum(
            data[name] for name in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        used=tuple(data["used"]),
        dry=data["dry"],
    )
