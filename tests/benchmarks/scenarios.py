"""The scenarios: which request, from which Lua script, at how many connections, against what.

Targets are ratios of requests per server-CPU-second to `hello`'s (GET /healthz, the cheapest
answer through the whole middleware stack), except for the Argon2-bound logins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from tests.benchmarks.seed import APP_REDIRECT_URI, CODE_VERIFIER, SignInForm, TokenPool

CONNECTIONS = 16  # every endpoint that does not hash a password
LOGIN_CONNECTIONS = 4  # two per worker saturates Argon2 on two cores

# Latency at CONNECTIONS (saturation) for every endpoint that does not hash a password: the
# tail against the median. p99 in milliseconds is reported, not held to a target: at saturation
# p50 is about CONNECTIONS / throughput (Little's law), so an absolute bound there only restates
# the throughput. Issue 13 holds absolute latency at a set load instead (PACED_P99_MAX_MS).
P99_MAX_OVER_P50 = 3.0
# Login against the raw Argon2 verify rate at the same parameters.
LOGIN_RATE_RATIO = 0.90  # requests/s over verifies/s of one process per core
LOGIN_CPU_RATIO = 0.95  # per server-CPU-second over verifies per CPU-second
# The hosted sign-in form's POST, and a login at Keycloak's Argon2 parameters (t=5, m=7 MiB,
# p=1, where the hash is a smaller share of a login): per CPU-second over raw verifies (issue 13).
SIGN_IN_CPU_RATIO = 0.90
KEYCLOAK_CPU_RATIO = 0.85
# Memory: an idle worker, and what login load adds to the workers (a sync worker hashes one
# password at a time: one Argon2 buffer each, plus this margin).
# Memory of the whole server (master and workers), idle after the scenarios have run once: the
# sum of PSS (each shared page counted once), at most Django + SimpleJWT's two-worker server on
# this machine (issue 13); and a worker's private memory (USS), what one more worker adds.
SERVER_PSS_MIB = 133.0
WORKER_USS_MIB = 30.0
LOGIN_RSS_MARGIN_MIB = 16.0


@dataclass(frozen=True)
class Scenario:
    name: str
    method: str
    path: str
    script: str  # in lua/
    connections: int = CONNECTIONS
    hello_ratio: float | None = None  # target: per CPU-s at least this times hello's
    login: bool = False  # Argon2-bound: compared with the raw verify rate instead
    keycloak: bool = False  # needs the server restarted with Keycloak's Argon2 parameters
    expect_status: int | None = None  # a non-2xx status that counts as success
    conditional: bool = False  # send If-None-Match with the current JWKS ETag
    # Hashing scenarios: their targets against raw Argon2 (req/s, per CPU-s).
    raw_rps_ratio: float | None = None
    raw_cpu_ratio: float | None = None

    @property
    def hashes_password(self) -> bool:
        return self.login or self.keycloak


SCENARIOS = [
    Scenario("hello", "GET", "/healthz", "get.lua"),
    Scenario("discovery", "GET", "/.well-known/openid-configuration", "get.lua", hello_ratio=0.90),
    Scenario("jwks", "GET", "/.well-known/jwks.json", "get.lua", hello_ratio=0.90),
    Scenario(
        "jwks-304",
        "GET",
        "/.well-known/jwks.json",
        "get.lua",
        hello_ratio=0.90,
        expect_status=304,
        conditional=True,
    ),
    Scenario("verify-token", "GET", "/api/v1/auth/verify-token/", "bearer.lua", hello_ratio=0.45),
    Scenario("introspect", "POST", "/oauth/introspect", "introspect.lua", hello_ratio=0.33),
    Scenario(
        "client_credentials", "POST", "/oauth/token", "client_credentials.lua", hello_ratio=0.35
    ),
    Scenario("refresh", "POST", "/api/v1/auth/token/refresh/", "refresh.lua", hello_ratio=0.13),
    # The OpenID provider: a code (PKCE, confidential app) for tokens and an ID token; userinfo
    # with the access token that gives; the hosted sign-in page (no target: a rendered page).
    Scenario("code-exchange", "POST", "/oauth/token", "code.lua", hello_ratio=0.25),
    Scenario("userinfo", "GET", "/oauth/userinfo", "bearer.lua", hello_ratio=0.45),
    Scenario("signin-page", "GET", "/signin", "get.lua"),
    Scenario(
        "login",
        "POST",
        "/api/v1/auth/login/",
        "login.lua",
        connections=LOGIN_CONNECTIONS,
        login=True,
        raw_rps_ratio=LOGIN_RATE_RATIO,
        raw_cpu_ratio=LOGIN_CPU_RATIO,
    ),
    Scenario(
        "signin",
        "POST",
        "/signin",
        "signin.lua",
        connections=LOGIN_CONNECTIONS,
        login=True,
        expect_status=303,
        raw_cpu_ratio=SIGN_IN_CPU_RATIO,
    ),
    Scenario(
        "login-keycloak",
        "POST",
        "/api/v1/auth/login/",
        "login.lua",
        connections=LOGIN_CONNECTIONS,
        keycloak=True,
        raw_cpu_ratio=KEYCLOAK_CPU_RATIO,
    ),
]
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


@dataclass
class Fixtures:
    """What the Lua scripts read: data files in `folder`, client credentials, the JWKS ETag."""

    folder: Path
    emails: list[str]
    password: str
    access_tokens: list[str]
    client_auth: str
    jwks_etag: str
    refresh_pool: TokenPool
    app_auth: str = ""
    code_pool: TokenPool | None = None
    userinfo_tokens: tuple[str, ...] = ()
    sign_in: SignInForm | None = None
    origin: str = ""

    def pool(self, scenario: Scenario) -> TokenPool | None:
        """The single-use pool a scenario spends, if any."""
        if scenario.script == "refresh.lua":
            return self.refresh_pool
        if scenario.script == "code.lua":
            return self.code_pool
        return None

    def env(self, scenario: Scenario) -> dict[str, str]:
        """The BENCH_* variables of one wrk run of `scenario` (writes its data file)."""
        env: dict[str, str] = {}
        if scenario.expect_status is not None:
            env["BENCH_EXPECT"] = str(scenario.expect_status)
        if scenario.conditional:
            env["BENCH_HEADER"] = f'If-None-Match: "{self.jwks_etag}"'
        if scenario.script in ("login.lua", "signin.lua"):
            env["BENCH_DATA"] = str(self._write("emails.txt", self.emails))
            env["BENCH_PASSWORD"] = self.password
        elif scenario.name == "userinfo":
            tokens = list(self.userinfo_tokens)
            env["BENCH_DATA"] = str(self._write("userinfo-tokens.txt", tokens))
        elif scenario.script in ("bearer.lua", "introspect.lua"):
            env["BENCH_DATA"] = str(self._write("access-tokens.txt", self.access_tokens))
        elif scenario.script == "refresh.lua":
            env["BENCH_DATA"] = str(self.refresh_pool.write(self.folder / "refresh-tokens.txt"))
        elif scenario.script == "code.lua":
            assert self.code_pool is not None
            env["BENCH_DATA"] = str(self.code_pool.write(self.folder / "codes.txt"))
            env["BENCH_AUTH"] = self.app_auth
            env["BENCH_REDIRECT"] = quote_plus(APP_REDIRECT_URI)
            env["BENCH_VERIFIER"] = CODE_VERIFIER
        if scenario.script == "signin.lua":
            assert self.sign_in is not None
            env["BENCH_COOKIE"] = self.sign_in.cookie
            env["BENCH_CSRF"] = quote_plus(self.sign_in.csrf_token)
            env["BENCH_ORIGIN"] = self.origin
        if scenario.script in ("introspect.lua", "client_credentials.lua"):
            env["BENCH_AUTH"] = self.client_auth
        return env

    def _write(self, name: str, lines: list[str]) -> Path:
        path = self.folder / name
        path.write_text("\n".join(lines) + "\n")
        return path


# Latency at a set load, through nginx (--paced): these scenarios, at these shares of the
# maximum each reached under wrk. At half load p99 stays within PACED_P99_MAX_MS and
# PACED_P99_MAX_OVER_P50 times p50 (issue 13); the 80 % row is reported.
PACED = ("discovery", "verify-token", "introspect", "client_credentials")
PACED_SHARES = (0.5, 0.8)
PACED_P99_MAX_MS = 25.0
PACED_P99_MAX_OVER_P50 = 3.0
FORM = "application/x-www-form-urlencoded"


def paced_request(scenario: Scenario, fixtures: Fixtures) -> dict[str, Any]:
    """The method, headers and body of a paced scenario's request (one token, sent each time)."""
    token = fixtures.access_tokens[0] if fixtures.access_tokens else ""
    if scenario.name == "verify-token":
        return {"headers": {"Authorization": f"Bearer {token}"}}
    if scenario.name == "introspect":
        return {
            "method": "POST",
            "headers": {"Authorization": fixtures.client_auth},
            "body": f"token={token}",
            "content_type": FORM,
        }
    if scenario.name == "client_credentials":
        return {
            "method": "POST",
            "headers": {"Authorization": fixtures.client_auth},
            "body": "grant_type=client_credentials",
            "content_type": FORM,
        }
    return {}
