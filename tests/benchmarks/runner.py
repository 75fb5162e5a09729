"""One scenario against a running server: warm up, measure, and read the server's CPU and RSS."""

from __future__ import annotations

import contextlib
import resource
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from tests.benchmarks.profile import Profiler
from tests.benchmarks.scenarios import Fixtures, Scenario
from tests.benchmarks.server import Gunicorn
from tests.benchmarks.wrk import WrkResult, run_wrk

MIB = 1024 * 1024
RSS_SAMPLE_INTERVAL = 0.05


@dataclass(frozen=True)
class Measurement:
    scenario: str
    connections: int
    requests: int  # answered within the window (wrk's count)
    served: int  # and those in flight when wrk stopped, which the server still answers
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    pool_dry: bool
    cpu_seconds: float  # server (master and workers), user + system, over the measured window
    db_cpu_seconds: float  # PostgreSQL backends serving our database, and Redis
    wrk_cpu_seconds: float  # the load generator's, on the same machine
    other_cpu_seconds: float  # everything else on the machine: noise, if large
    steal_cpu_seconds: float  # taken by the hypervisor for other guests: noise, if large
    peak_workers_rss_mib: float | None = None  # sampled while measuring, hashing scenarios only
    peak_worker_rss_mib: float | None = None

    @property
    def per_cpu_second(self) -> float:
        return self.served / self.cpu_seconds if self.cpu_seconds > 0 else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors + int(self.pool_dry)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "per_cpu_second": round(self.per_cpu_second, 1)}


class RssSampler:
    """Sample the workers' RSS in a thread; keep the peaks (total and single worker)."""

    def __init__(self, server: Gunicorn) -> None:
        self.server = server
        self.peak_total = 0
        self.peak_single = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_INTERVAL):
            with contextlib.suppress(psutil.Error):
                sizes = self.server.worker_rss().values()
                self.peak_total = max(self.peak_total, sum(sizes))
                self.peak_single = max(self.peak_single, max(sizes, default=0))


def measure(
    server: Gunicorn,
    scenario: Scenario,
    fixtures: Fixtures,
    *,
    warmup: int,
    duration: int,
    threads: int,
    database_name: str | None = None,
    profile_dir: Path | None = None,
) -> Measurement:
    """Warm up, then measure one fixed window of `scenario` at its connection count.

    The server CPU is counted from an idle server to an idle server: the requests still in
    flight when wrk stops (one per connection) are answered after it, and count with their CPU.
    Stopping the clock at wrk's exit instead would charge their partial work to the others,
    a bias of several percent for a login that takes a second. With `profile_dir`, py-spy
    samples the workers over the window (and costs them CPU: such a run is not comparable).
    """
    if warmup > 0:
        server.wait_until_idle()
        _wrk(server, scenario, fixtures, warmup, threads)
    server.wait_until_idle()
    profiler = None
    if profile_dir is not None:
        profiler = Profiler(profile_dir, scenario.name.replace(" ", "-"), duration)
        profiler.start([worker.pid for worker in server.worker_processes()])
    clock = _CpuClock(server, database_name)
    with RssSampler(server) as sampler:
        result = _wrk(server, scenario, fixtures, duration, threads)
        server.wait_until_idle()
    cpu = clock.elapsed()
    if profiler is not None:
        profiler.stop()
    peaks: dict[str, float] = {}
    if scenario.hashes_password:
        peaks = {
            "peak_workers_rss_mib": round(sampler.peak_total / MIB, 1),
            "peak_worker_rss_mib": round(sampler.peak_single / MIB, 1),
        }
    return Measurement(
        scenario=scenario.name,
        connections=scenario.connections,
        requests=result.requests,
        served=result.requests + scenario.connections,
        requests_per_second=round(result.requests_per_second, 1),
        p50_ms=round(result.p50_ms, 2),
        p90_ms=round(result.p90_ms, 2),
        p99_ms=round(result.p99_ms, 2),
        non_2xx=result.non_2xx,
        socket_errors=result.socket_errors,
        pool_dry=result.dry,
        cpu_seconds=round(cpu.server, 2),
        db_cpu_seconds=round(cpu.services, 2),
        wrk_cpu_seconds=round(cpu.wrk, 2),
        other_cpu_seconds=round(cpu.other, 2),
        steal_cpu_seconds=round(cpu.steal, 2),
        **peaks,
    )


@dataclass(frozen=True)
class Pairing:
    """A scenario and hello in alternating short slices: their CPU costs measured side by side."""

    slices: int  # of each
    seconds: int  # per slice
    per_cpu_second: float  # the scenario's requests per server-CPU-second over its slices
    hello_per_cpu_second: float  # hello's, over the slices in between

    @property
    def ratio(self) -> float:
        return self.per_cpu_second / self.hello_per_cpu_second if self.hello_per_cpu_second else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "slices": self.slices,
            "seconds": self.seconds,
            "per_cpu_second": round(self.per_cpu_second, 1),
            "hello_per_cpu_second": round(self.hello_per_cpu_second, 1),
            "ratio": round(self.ratio, 3),
        }


def measure_pairing(
    server: Gunicorn,
    scenario: Scenario,
    hello: Scenario,
    fixtures: Fixtures,
    *,
    slices: int,
    seconds: int,
    threads: int,
) -> Pairing:
    """Alternate hello and `scenario` in `seconds`-long slices, hello first and last.

    The CPU cost of one request drifts on a shared machine by a third within minutes; slices a
    second apart see the same machine, so their ratio is the scenario's cost, not the drift's.
    """
    totals = {scenario.name: [0, 0.0], hello.name: [0, 0.0]}
    order = [hello, *[s for _ in range(slices) for s in (scenario, hello)]]
    server.wait_until_idle()
    for current in order:
        # Only the server's CPU counts here: no need for _CpuClock's walk over every process.
        started = server.cpu_seconds()
        result = _wrk(server, current, fixtures, seconds, threads)
        server.wait_until_idle()  # the slice's last requests answered: the next starts idle
        totals[current.name][0] += result.requests + current.connections
        totals[current.name][1] += server.cpu_seconds() - started
    (served, cpu), (hello_served, hello_cpu) = totals[scenario.name], totals[hello.name]
    return Pairing(
        slices=slices,
        seconds=seconds,
        per_cpu_second=served / cpu if cpu > 0 else 0.0,
        hello_per_cpu_second=hello_served / hello_cpu if hello_cpu > 0 else 0.0,
    )


@dataclass(frozen=True)
class CpuSplit:
    server: float
    services: float
    wrk: float
    other: float
    steal: float


class _CpuClock:
    """CPU seconds spent from its creation on, split by who spent them."""

    def __init__(self, server: Gunicorn, database_name: str | None) -> None:
        self.server = server
        self.database_name = database_name
        self.start = self._read()

    def _read(self) -> tuple[float, float, float, float, float, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it has exited
        own = resource.getrusage(resource.RUSAGE_SELF)  # this process and its sampler thread
        machine = psutil.cpu_times()
        busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
        return (
            self.server.cpu_seconds(),
            self._services_cpu(),
            children.ru_utime + children.ru_stime,
            own.ru_utime + own.ru_stime,
            busy,
            getattr(machine, "steal", 0.0),
        )

    def _services_cpu(self) -> float:
        """PostgreSQL backends connected to our database, and Redis."""
        total = 0.0
        for process in psutil.process_iter(["name", "cmdline"]):
            name = process.info["name"] or ""
            title = " ".join(process.info["cmdline"] or [])
            ours = self.database_name is not None and f" {self.database_name} " in title
            if name.startswith("redis-server") or (name.startswith("postgres") and ours):
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system
        return total

    def elapsed(self) -> CpuSplit:
        server, services, wrk, own, busy, steal = (
            b - a for a, b in zip(self.start, self._read(), strict=True)
        )
        other = max(0.0, busy - server - services - wrk - own)
        return CpuSplit(server, max(0.0, services), wrk, other, steal)


def _wrk(
    server: Gunicorn, scenario: Scenario, fixtures: Fixtures, duration: int, threads: int
) -> WrkResult:
    result = run_wrk(
        server.front_url + scenario.path,
        scenario.script,
        connections=scenario.connections,
        threads=threads,
        duration=duration,
        env=fixtures.env(scenario),
    )
    pool = fixtures.pool(scenario)
    if pool is not None:
        pool.spend(result.used)
    return result
