"""The benchmark's command line and its phases: prepare, measure, restart for Keycloak, report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import redis
import requests
from sqlalchemy.engine import make_url

from tests.benchmarks import report
from tests.benchmarks.micro import Argon2Rate, Micro, argon2_verify_rate, combined, rs256_rates
from tests.benchmarks.paced import Paced, hey_available, run_hey
from tests.benchmarks.params import DEFAULT_ARGON2, KEYCLOAK_ARGON2, PASSWORD, Argon2Params
from tests.benchmarks.profile import py_spy, summary
from tests.benchmarks.runner import MIB, Measurement, Pairing, measure, measure_pairing
from tests.benchmarks.scenarios import (
    BY_NAME,
    PACED,
    PACED_SHARES,
    SCENARIOS,
    Fixtures,
    Scenario,
    paced_request,
)
from tests.benchmarks.seed import (
    Seeded,
    login_access_tokens,
    open_sign_in_page,
    redeem_codes,
    seed,
    set_password_hashes,
)
from tests.benchmarks.server import (
    ROOT,
    Gunicorn,
    create_database,
    flask_cli,
    free_port,
    production_env,
    stop_all,
)
from tests.benchmarks.wrk import wrk_available
from tests.nginx_server import Nginx, nginx_available

HISTORY = Path(__file__).resolve().parent / "history.jsonl"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
ACCESS_TOKENS = 4  # users logged in over HTTP for verify-token and introspect
BUDGET_SECONDS = 180
_STARTED = time.monotonic()

# Each scenario's CPU ratio to hello comes from slices of the two alternating (hello first and
# last): the cost of a request drifts by a third within minutes on this VM, not within seconds.
PAIRED_SLICES = 3
PAIRED_SECONDS = 1

Measured = list[tuple[Scenario, Measurement]]
Runner = Callable[[Scenario], Measurement]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark idp under gunicorn with production settings, loaded by wrk."
    )
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("IDP_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a database on the server where idp_bench_<random> is created (and dropped)",
    )
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help="IDP_REDIS_URL, used if it answers; '' for none",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(s.name for s in SCENARIOS),
        help="comma-separated, from: " + ", ".join(s.name for s in SCENARIOS),
    )
    parser.add_argument("--duration", type=int, default=6, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds per scenario")
    parser.add_argument(
        "--micro-duration", type=float, default=3.0, help="seconds per Argon2 micro-benchmark"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument(
        "--gunicorn-args", default="", help="extra gunicorn flags (GUNICORN_CMD_ARGS)"
    )
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--refresh-pool", type=int, default=10_000)
    parser.add_argument("--code-pool", type=int, default=10_000)
    parser.add_argument(
        "--enforce",
        action="store_true",
        help="exit 1 when a scenario stays below 0.9 x its target on a second try (with"
        " --runs: when the median of the runs does)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="run the whole benchmark this many times (each a history line) and report each"
        " check's median",
    )
    parser.add_argument(
        "--proxy",
        action="store_true",
        help="send the load through nginx with nginx/idp.conf.template (Debian's nginx)",
    )
    parser.add_argument(
        "--paced",
        action="store_true",
        help="then hold 50%% and 80%% of each paced scenario's maximum with hey, through nginx"
        " (implies --proxy)",
    )
    parser.add_argument("--json", type=Path, help="also write the summary to this file")
    parser.add_argument("--history", type=Path, default=HISTORY, help="JSON lines to append to")
    parser.add_argument("--no-history", action="store_true")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the workers with py-spy during each window; stacks and a summary in DIR"
        " (the sampling costs CPU: such a run is not appended to the history)",
    )
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    args.selected = [s for s in SCENARIOS if s.name in names]
    args.proxy = args.proxy or args.paced
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not wrk_available():
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    if args.proxy and not nginx_available():
        print("nginx is not installed (apt-get install nginx)", file=sys.stderr)
        return 2
    if args.paced and not hey_available():
        print("hey is not installed (apt-get install hey)", file=sys.stderr)
        return 2
    if args.profile and py_spy() is None:
        print("py-spy is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 2
    _stop_on_signals()
    runs = [_run_once(args) for _ in range(max(1, args.runs))]
    if len(runs) == 1:
        return 1 if args.enforce and runs[0].far_off else 0
    named = report.medians(runs)
    print("\n" + report.medians_markdown(named, len(runs)))
    return 1 if args.enforce and any(check.far_off for _about, check in named) else 0


def _run_once(args: argparse.Namespace) -> report.Results:
    """One whole benchmark on a fresh database: printed, and a line in the history."""
    global _STARTED
    _STARTED = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="idp-bench-") as folder:
        database = create_database(args.database, args.postgres_url, Path(folder))
        try:
            results = Bench(args, Path(folder), database.url).run()
        finally:
            stop_all()
            database.drop()
    print(results.markdown())
    print(f"\nWhole run: {results.meta['wall_seconds']:.0f} s (budget {BUDGET_SECONDS} s)")
    if args.profile:
        print(profile_report(args.profile, args.selected))
    summary = results.as_dict()
    if not args.no_history and not args.profile:
        report.append_history(args.history, summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return results


class Bench:
    """One run against one fresh database."""

    def __init__(self, args: argparse.Namespace, workdir: Path, database_url: str) -> None:
        self.args = args
        self.selected: list[Scenario] = args.selected
        self.workdir = workdir
        self.database_url = database_url
        self.database_name = make_url(database_url).database if args.database != "sqlite" else None
        self.keys_dir = workdir / "keys"
        port = free_port()
        self.env = production_env(
            port=port,
            database_url=database_url,
            keys_dir=self.keys_dir,
            redis_url=_reachable_redis(args.redis_url),
            argon2=DEFAULT_ARGON2,
            workers=args.workers,
            gunicorn_args=args.gunicorn_args,
        )
        self.nginx = Nginx(free_port(), port, workdir / "nginx") if args.proxy else None
        if self.nginx is not None:
            self.env["IDP_TRUSTED_PROXIES"] = "1"  # as behind the proxy in production
        self.server = Gunicorn(self.env, port, args.workers, workdir / "gunicorn.log")
        self.pairings: dict[str, Pairing] = {}
        # Raw Argon2 verify rates at each parameter set, measured beside its logins.
        self.raw_argon2: dict[Argon2Params, Argon2Rate] = {}

    def run(self) -> report.Results:
        seeded = self._prepare()
        micro = self._micro()
        _log(f"starting gunicorn ({self.args.workers} workers) on {self.server.url}")
        self.server.start()
        if self.nginx is not None:
            self.nginx.start()
            self.server.front_url = self.nginx.url
            _log(f"nginx in front, on {self.nginx.url}")
        memory_started = self.server.memory()
        idle_rss_mib = [round(m.rss / MIB, 1) for m in memory_started if m.role == "worker"]
        fixtures = Fixtures(
            folder=self.workdir,
            emails=seeded.emails,
            password=PASSWORD,
            access_tokens=login_access_tokens(self.server.url, seeded.emails, ACCESS_TOKENS),
            client_auth=seeded.client.basic_auth(),
            jwks_etag=_jwks_etag(self.server.url),
            refresh_pool=seeded.refresh_pool,
            app_auth=seeded.app.basic_auth(),
            code_pool=seeded.code_pool,
            userinfo_tokens=tuple(
                redeem_codes(self.server.url, seeded.app, seeded.code_pool.take(ACCESS_TOKENS))
                if seeded.code_pool.tokens
                else ()
            ),
            sign_in=open_sign_in_page(self.server.url),
            origin=self.server.url,
        )
        run_one = self._runner(fixtures)
        measured = self._measure_default_parameters(run_one, fixtures)
        paced = self._paced(measured, fixtures) if self.args.paced else []
        self.server.wait_until_idle()
        memory_warm = self.server.memory()
        micro = dataclasses.replace(micro, argon2=self.raw_argon2.get(DEFAULT_ARGON2))
        baseline = _baseline(measured, micro, self.args.workers, sum(idle_rss_mib))
        evaluations = self._evaluate(measured, baseline, run_one, fixtures)
        keycloak = [s for s in self.selected if s.keycloak]
        if keycloak:
            self.server.stop()
            _log(f"restarting with Keycloak's Argon2 ({KEYCLOAK_ARGON2.label()}), new hashes")
            set_password_hashes(self.database_url, KEYCLOAK_ARGON2)
            self.server.env = {**self.env, **KEYCLOAK_ARGON2.env()}
            self.server.start()
            measured = self._logins(KEYCLOAK_ARGON2, run_one, keycloak)
            micro = dataclasses.replace(micro, argon2_keycloak=self.raw_argon2[KEYCLOAK_ARGON2])
            baseline = dataclasses.replace(baseline, keycloak_argon2=micro.argon2_keycloak)
            evaluations += self._evaluate(measured, baseline, run_one, fixtures)
        self.server.stop()
        if self.nginx is not None:
            self.nginx.stop()
        return report.Results(self._meta(), evaluations, micro, memory_started, memory_warm, paced)

    def _paced(self, measured: Measured, fixtures: Fixtures) -> list[Paced]:
        """Hold PACED_SHARES of each paced scenario's measured maximum with hey."""
        found = []
        maxima = {s.name: m.requests_per_second for s, m in measured}
        for scenario in self.selected:
            if scenario.name not in PACED or scenario.name not in maxima:
                continue
            request = paced_request(scenario, fixtures)
            for share in PACED_SHARES:
                rate = maxima[scenario.name] * share
                _log(f"{scenario.name}: {rate:.0f} req/s ({share:.0%} of its maximum) with hey")
                found.append(
                    run_hey(
                        self.server.front_url + scenario.path,
                        scenario=scenario.name,
                        share=share,
                        rate=rate,
                        seconds=self.args.duration,
                        connections=scenario.connections,
                        **request,
                    )
                )
        return found

    def _prepare(self) -> Seeded:
        name = self.database_url.rsplit("/", 1)[-1]
        _log(f"database {name}: migrating, creating a signing key")
        flask_cli(self.env, ("db", "upgrade"), ("keys", "rotate"))
        pool = self.args.refresh_pool if BY_NAME["refresh"] in self.selected else 0
        wants_codes = {"code-exchange", "userinfo"} & {s.name for s in self.selected}
        codes = self.args.code_pool if wants_codes else 0
        _log(
            f"seeding {self.args.users} users, a client, an app, {pool} refresh tokens, "
            f"{codes} authorization codes"
        )
        return seed(self.database_url, self.args.users, pool, codes, DEFAULT_ARGON2)

    def _micro(self) -> Micro:
        """RS256 rates before the server starts (Argon2's are measured beside the logins)."""
        _log("micro: RS256 sign and verify")
        return Micro(rs256_rates(self.keys_dir, self.args.micro_duration / 3))

    def _beside_raw_argon2(
        self, params: Argon2Params, run_one: Runner, scenario: Scenario
    ) -> tuple[Measurement, Argon2Rate]:
        """Measure `scenario` between two raw Argon2 runs at `params` (one process per core).

        The raw rate is the login's denominator: measured just before and just after it, it
        sees the machine the login saw (idle workers use no CPU meanwhile).
        """
        cores = os.cpu_count() or 1
        seconds = self.args.micro_duration / 2
        _log(f"micro: Argon2 verify ({params.label()}), {cores} processes")
        before = argon2_verify_rate(params, cores, seconds)
        measurement = run_one(scenario)
        _log(f"micro: Argon2 verify ({params.label()}), {cores} processes")
        after = argon2_verify_rate(params, cores, seconds)
        return measurement, combined(before, after)

    def _runner(self, fixtures: Fixtures) -> Runner:
        def run_one(scenario: Scenario) -> Measurement:
            _log(
                f"{scenario.name}: {scenario.method} {scenario.path}, {scenario.connections} conns"
            )
            return measure(
                self.server,
                scenario,
                fixtures,
                warmup=self.args.warmup,
                duration=self.args.duration,
                threads=self.args.wrk_threads,
                database_name=self.database_name,
                profile_dir=self.args.profile,
            )

        return run_one

    def _measure_default_parameters(self, run_one: Runner, fixtures: Fixtures) -> Measured:
        """Every scenario but Keycloak's, hello first and last, each paired with hello."""
        others = [s for s in self.selected if not s.keycloak and s.name != "hello"]
        fast = [s for s in others if not s.hashes_password]
        logins = [s for s in others if s.hashes_password]
        if not fast:
            return self._logins(DEFAULT_ARGON2, run_one, logins)  # no ratio to hello needed
        hello = BY_NAME["hello"]
        measured = [(hello, run_one(hello))]
        for scenario in fast:
            measured.append((scenario, run_one(scenario)))
            self.pairings[scenario.name] = self._pair(scenario, fixtures)
        last = dataclasses.replace(run_one(hello), scenario="hello (last)")
        measured.append((hello, last))
        return measured + self._logins(DEFAULT_ARGON2, run_one, logins)

    def _logins(self, params: Argon2Params, run_one: Runner, logins: list[Scenario]) -> Measured:
        """Each login beside raw Argon2 at `params`; the last raw rate is kept for `params`."""
        measured = []
        for scenario in logins:
            m, self.raw_argon2[params] = self._beside_raw_argon2(params, run_one, scenario)
            measured.append((scenario, m))
        return measured

    def _pair(self, scenario: Scenario, fixtures: Fixtures) -> Pairing:
        _log(
            f"{scenario.name}: {PAIRED_SLICES} slices of {PAIRED_SECONDS} s alternating with hello"
        )
        return measure_pairing(
            self.server,
            scenario,
            BY_NAME["hello"],
            fixtures,
            slices=PAIRED_SLICES,
            seconds=PAIRED_SECONDS,
            threads=self.args.wrk_threads,
        )

    def _evaluate(
        self, measured: Measured, baseline: report.Baseline, run_one: Runner, fixtures: Fixtures
    ) -> list[report.Evaluation]:
        """Evaluate each measurement; with --enforce, measure a far-off scenario once more."""
        evaluations = []
        for scenario, m in measured:
            pairing = self.pairings.get(m.scenario)
            evaluation = report.evaluate(scenario, m, baseline, pairing)
            if self.args.enforce and evaluation.far_off:
                _log(f"{m.scenario}: far from its target, measuring once more")
                retry = dataclasses.replace(run_one(scenario), scenario=m.scenario)
                if pairing is not None:
                    pairing = self._pair(scenario, fixtures)
                evaluation = report.evaluate(scenario, retry, baseline, pairing)
            evaluations.append(evaluation)
        return evaluations

    def _meta(self) -> dict[str, Any]:
        commit, dirty = _git_state()
        return {
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": commit,
            "dirty": dirty,
            "cores": os.cpu_count(),
            "workers": self.args.workers,
            "database": self.args.database,
            "redis": "IDP_REDIS_URL" in self.env,
            "argon2": DEFAULT_ARGON2.label(),
            "duration_s": self.args.duration,
            "warmup_s": self.args.warmup,
            "wall_seconds": round(time.monotonic() - _STARTED, 1),
        }


def _baseline(
    measured: Measured, micro: Micro, workers: int, idle_workers_rss_mib: float
) -> report.Baseline:
    """hello's first and last runs averaged, and the raw Argon2 rates."""
    hellos = [m for s, m in measured if s.name == "hello"]
    count = len(hellos) or 1
    return report.Baseline(
        hello_rps=sum(m.requests_per_second for m in hellos) / count,
        hello_per_cpu=sum(m.per_cpu_second for m in hellos) / count,
        argon2=micro.argon2,
        keycloak_argon2=micro.argon2_keycloak,
        workers=workers,
        idle_workers_rss_mib=idle_workers_rss_mib,
    )


def profile_report(folder: Path, selected: list[Scenario]) -> str:
    """The py-spy summaries of the scenarios profiled, also written to DIR/summary.txt."""
    paths = [folder / f"{s.name}.txt" for s in selected if (folder / f"{s.name}.txt").exists()]
    text = "\n\n".join(summary(path) for path in paths)
    (folder / "summary.txt").write_text(text + "\n")
    return text


def _reachable_redis(url: str) -> str | None:
    if not url:
        return None
    try:
        redis.Redis.from_url(url, socket_timeout=1).ping()
    except redis.RedisError as exc:
        _log(f"Redis at {url} does not answer ({exc}); running without IDP_REDIS_URL")
        return None
    return url


def _jwks_etag(base_url: str) -> str:
    response = requests.get(f"{base_url}/.well-known/jwks.json", timeout=5)
    response.raise_for_status()
    return response.headers["ETag"].strip('"')


def _git_state() -> tuple[str, bool]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    # Every run appends to the history file: that alone does not make the code dirty.
    history = HISTORY.relative_to(ROOT).as_posix()
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", f":!{history}")
    return commit, bool(changed)


def _stop_on_signals() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit, so that `finally` stops the server."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)


def _log(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)
