"""A whole run's logs hold none of the secrets the run handled.

One journey through a server as production runs it: gunicorn with 2 workers and gunicorn.conf.py's
own access line (not the harness's --access-logformat, which shows query strings), JSON lines,
audit lines on stderr with the rest (IDP_AUDIT_LOG unset), IDP_LOG_LEVEL=DEBUG; a mail worker
(`flask mail send-pending --loop`) beside it, real SMTP (aiosmtpd), and an operator's `flask`
commands. Every secret the journey handles is collected as it goes: passwords (right, wrong and
new, in JSON to the API and form-encoded to the hosted sign-in page), mailed links and their
tokens (the links opened, so the tokens reach the server in query strings), access, refresh and
ID tokens (the ID token as a logout hint in a query string), the authorization code and its PKCE
verifier, client secrets (and the Basic credentials made of them, a rotated-out one among them),
the browser's cookies, garbage and forged bearer tokens, the metrics token (right and wrong),
IDP_SECRET_KEY and the signing keys' private halves.

Then every line of every output is searched for each secret: as is, URL-, form- or JSON-encoded,
a JWT by its signature alone, a random token cut short at either end; and in each line's
unescaped readings too (a JSON body printed with %r inside a JSON log line hides a password
under three layers of escapes). The outputs: gunicorn's log (master and workers: app lines, audit
lines, gunicorn's own), the access log, the mail worker's stdout and stderr, and the stdout and
stderr of every `flask` command.

What may hold a secret, and where: only the stdout of `clients create` and `clients rotate-secret`,
whose job is to show the operator the one secret the command made, once, on its `client_secret:`
line; that stdout may hold that secret and nothing else (it is checked to be exactly the
`client_id:`/`client_secret:` lines). The same command's stderr (its "store the secret" notice,
its log) and its audit line (`client.created`, `client.secret_rotated`, on stderr) hold none, nor
does any other output. The mails hold their links: they are not logs, the mailbox is the user's.
"""

from __future__ import annotations

import base64
import codecs
import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex, token_urlsafe
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit

import pytest
import requests
from joserfc.jwk import RSAKey
from sqlalchemy.engine import make_url

from tests.conftest import REDIS_URL
from tests.e2e.conftest import REQUEST_TIMEOUT, ROOT, VENV_BIN, server_env
from tests.e2e.relying_app import RelyingApp
from tests.e2e.test_logs import json_lines
from tests.gunicorn_server import GunicornServer
from tests.oidc_flows import csrf_token, hidden
from tests.support import TOKEN_IN_LINK, ReceivedMail, RefusingMailbox, SMTPServer, free_port

pytestmark = pytest.mark.e2e

API = "/api/v1/auth"
OIDC_SCOPE = "openid profile email offline_access"
MAIL_LINK = re.compile(r"https?://[^\s\"'<>]+\?token=[A-Za-z0-9_-]+")
JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
RANDOM_TOKEN = re.compile(r"^[A-Za-z0-9_+/=-]{32,}$")
SMTP_TRY_LATER = "451 4.3.0 Try again later"
# Events the journey must have written to the server's log: proof that the search read a log
# with the journey in it, not an empty or wrong file.
SERVER_EVENTS = {
    "user.register",
    "user.verify_email",
    "login.success",
    "login.failure",
    "session.refresh",
    "session.logout",
    "password_reset.requested",
    "password_reset.confirmed",
    "client.auth_failure",
    "token.issued",
    "token.revoked",
    "browser_session.started",
    "consent.granted",
    "authorization.code_issued",
    "authorization.code_redeemed",
    "authorization.code_reused",
    "browser_session.ended",
}


# -- the secrets, and how a log line could hold one ----------------------------------------------


class Secrets:
    """Every secret the run handled, by a name that says what it is."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        # Secrets whose either end is no secret (Basic credentials start with the client id).
        self.whole_only: set[str] = set()

    def add(self, name: str, value: str, *, whole_only: bool = False) -> str:
        assert isinstance(value, str) and len(value) >= 8, (name, value)
        assert name not in self.values, name
        self.values[name] = value
        if whole_only:
            self.whole_only.add(name)
        return value

    def add_jwt(self, name: str, value: str) -> str:
        assert JWT_SHAPE.match(value), (name, value)
        return self.add(name, value)

    def spellings(self, name: str) -> dict[str, str]:
        return spellings(self.values[name], cut_short=name not in self.whole_only)


def spellings(secret: str, cut_short: bool = True) -> dict[str, str]:
    """The ways a log line could hold `secret`: as is, URL- or form-encoded, JSON-escaped; a JWT
    by its signature alone; a random token (`cut_short`) by its first or last 16 characters.

    Escapes of escapes (a request's JSON body, printed with %r, in a JSON log line) are undone
    on the line's side: see `readings`.
    """
    forms = {
        "as is": secret,
        "URL-encoded": quote(secret, safe=""),
        "form-encoded": quote_plus(secret),
        "JSON-escaped": json.dumps(secret)[1:-1],
    }
    random_part = secret
    if JWT_SHAPE.match(secret):
        # The header (and often the claims) are no secret; the signature makes the token.
        random_part = forms["signature"] = secret.rsplit(".", 1)[1]
    if cut_short and RANDOM_TOKEN.match(random_part):
        forms["first 16 characters"] = random_part[:16]
        forms["last 16 characters"] = random_part[-16:]
    return forms


def readings(line: str, depth: int = 3) -> set[str]:
    """A log line and what it says once unescaped, up to `depth` layers deep: backslash escapes
    (JSON's and Python's: `\\"`, `\\u00f6`, `\\xc3\\xb6`) and URL encoding undone, in any order."""
    seen = {line}
    layer = [line]
    for _ in range(depth):
        deeper = []
        for text in layer:
            for decoded in (unescaped(text), unquote_plus(text)):
                if decoded not in seen:
                    seen.add(decoded)
                    deeper.append(decoded)
        layer = deeper
    return seen


def unescaped(text: str) -> str:
    """`text` with its backslash escapes undone; escaped UTF-8 bytes come back as characters."""
    try:
        # Characters beyond Latin-1 become \\uXXXX first, which the decoding turns back.
        decoded = codecs.decode(text.encode("latin-1", "backslashreplace"), "unicode_escape")
    except UnicodeDecodeError:  # a stray backslash: nothing to undo
        return text
    try:
        return decoded.encode("latin-1").decode("utf-8")  # b'w\\xc3\\xb6rd' was "wörd"
    except UnicodeError:
        return decoded


@dataclass(frozen=True)
class Output:
    """What one process wrote to one stream (or file), and the secrets it exists to print."""

    name: str
    text: str
    may_hold: frozenset[str] = frozenset()


def leaks(outputs: list[Output], secrets: Secrets) -> list[str]:
    """Each (output, secret) pair where a line of the output holds the secret, in any spelling
    and under any escaping; with the first such line."""
    found: dict[tuple[str, str], str] = {}
    for output in outputs:
        for line in output.text.splitlines():
            views = readings(line)
            for name in secrets.values:
                if name in output.may_hold or (output.name, name) in found:
                    continue
                for how, form in secrets.spellings(name).items():
                    if any(form in view for view in views):
                        found[output.name, name] = f"{output.name}: {name} ({how}) in {line!r}"
                        break
    return list(found.values())


def events(text: str) -> list[dict[str, Any]]:
    """The audit lines of a log (a command's stderr also has lines for the operator to read)."""
    lines = json_lines("\n".join(line for line in text.splitlines() if line.startswith("{")))
    return [line for line in lines if line.get("logger") == "idp.audit"]


# -- the run: a server, a mail worker, an operator ---------------------------------------------


@dataclass
class Run:
    server: GunicornServer
    folder: Path
    mailbox: RefusingMailbox
    secrets: Secrets
    worker: subprocess.Popen[bytes] | None = None
    outputs: list[Output] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def worker_stdout(self) -> Path:
        return self.folder / "mail-worker.out"

    @property
    def worker_stderr(self) -> Path:
        return self.folder / "mail-worker.err"

    def flask(self, *args: str, prints: str | None = None) -> str:
        """Run `flask --app wsgi ARGS` as an operator, with the server's settings; its stdout.

        `prints` names the secret the command exists to print on its `client_secret:` line: it
        is collected under that name, and this command's stdout alone may hold it.
        """
        done = subprocess.run(
            [str(VENV_BIN / "flask"), "--app", "wsgi", *args],
            cwd=ROOT,
            env=self.server.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        name = f"#{len(self.outputs) // 2 + 1} `flask {' '.join(args[:2])}`"
        allowed: frozenset[str] = frozenset()
        if prints is not None:
            (printed,) = re.findall(r"^client_secret: (\S+)$", done.stdout, re.MULTILINE)
            self.secrets.add(prints, printed)
            allowed = frozenset({prints})
        self.outputs.append(Output(f"{name} stderr", done.stderr))
        self.outputs.append(Output(f"{name} stdout", done.stdout, allowed))
        return done.stdout

    def start_mail_worker(self) -> None:
        """`flask mail send-pending --loop`, as the `mailer` service runs it, logging to files."""
        command = ["mail", "send-pending", "--loop", "--interval", "0.5"]
        with self.worker_stdout.open("wb") as out, self.worker_stderr.open("wb") as err:
            self.worker = subprocess.Popen(
                [str(VENV_BIN / "flask"), "--app", "wsgi", *command],
                cwd=ROOT,
                env=self.server.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def stop_mail_worker(self) -> None:
        worker, self.worker = self.worker, None
        if worker is None:
            return
        worker.send_signal(signal.SIGTERM)
        try:
            assert worker.wait(timeout=10) == 0, self.worker_stderr.read_text()
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)

    def wait_for_log(self, text: str, timeout: float = 15.0) -> None:
        """Until the server's or the mail worker's log says `text`."""
        deadline = time.monotonic() + timeout
        while text not in self.server.error_log.read_text() + self.worker_stderr.read_text():
            assert time.monotonic() < deadline, f"{text!r} never logged"
            time.sleep(0.05)


@pytest.fixture
def run(e2e_database: dict[str, Any], tmp_path: Path) -> Iterator[Run]:
    """A server as production logs it, its mail worker, and an SMTP server that can refuse."""
    mailbox = RefusingMailbox()
    smtp = SMTPServer(mailbox)
    smtp.start()
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    collected = Secrets()
    extra = {
        "IDP_LOG_LEVEL": "DEBUG",
        # Random, so that a line holding it cannot be a line about something else.
        "IDP_SECRET_KEY": collected.add("IDP_SECRET_KEY", token_urlsafe(32)),
        "IDP_METRICS_TOKEN": collected.add("metrics token", token_urlsafe(40)),
        # Mails link to the hosted pages, so that opening a link sends its token to the server.
        "IDP_FRONTEND_URL": issuer,
        # A refused mail is due again at once, for the mail worker; it never goes dead here.
        "IDP_MAIL_RETRY_DELAY": "0",
        "IDP_MAIL_MAX_ATTEMPTS": "50",
    }
    if REDIS_URL:
        extra["IDP_REDIS_URL"] = REDIS_URL
        extra["IDP_RATELIMIT_PREFIX"] = f"idp-secrets-{token_hex(6)}"
    database_password = make_url(e2e_database["IDP_DATABASE_URL"]).password
    if database_password:
        collected.add("database password", str(database_password))
    env = server_env(e2e_database, tmp_path / "keys", port, smtp.port, **extra)
    # gunicorn.conf.py as production has it: no flags from the shell that runs the tests.
    env.pop("GUNICORN_CMD_ARGS", None)
    # No IDP_LOG_FORMAT (JSON is the default), no IDP_AUDIT_LOG (audit lines go to stderr).
    assert "IDP_LOG_FORMAT" not in env and "IDP_AUDIT_LOG" not in env
    # gunicorn.conf.py's own access line: no --access-logformat of ours.
    server = GunicornServer(
        env,
        port,
        workers=2,
        error_log=tmp_path / "gunicorn.log",
        access_log=tmp_path / "access.log",
        args=("-w", "2"),
    )
    started = Run(server, tmp_path, mailbox, collected)
    try:
        server.start()
        started.start_mail_worker()
        yield started
    finally:
        started.stop_mail_worker()
        server.stop()
        smtp.stop()


# -- HTTP helpers --------------------------------------------------------------------------------


def answered(response: requests.Response, status: int) -> Any:
    """The JSON body of a response that must have `status`."""
    where = (response.request.method, response.request.path_url)
    assert response.status_code == status, (*where, response.status_code, response.text)
    return response.json() if response.content else None


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def add_basic_credentials(secrets: Secrets, name: str, client_id: str, client_secret: str) -> None:
    """Collect what an `Authorization: Basic` header carries for a client (its start encodes
    the client id, no secret: only the whole is searched for)."""
    credentials = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    secrets.add(name, credentials, whole_only=True)


def collect_mail(secrets: Secrets, name: str, mail: ReceivedMail) -> list[str]:
    """Collect a mail's links and their tokens; return its links in order."""
    links = MAIL_LINK.findall(mail.text)
    tokens = TOKEN_IN_LINK.findall(mail.text)
    assert links and len(links) == len(tokens), mail.text
    for number, (link, token) in enumerate(zip(links, tokens, strict=True), start=1):
        secrets.add(f"{name}, link {number}", link)
        secrets.add(f"{name}, token {number}", token)
    return links


def forged(real_jwt: str, change: Callable[[dict[str, Any]], None]) -> str:
    """A JWT with a real header, claims edited by `change`, and a made-up signature."""
    header, payload, _signature = real_jwt.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    change(claims)
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{token_urlsafe(256)}"


def signing_key_secrets(secrets: Secrets, keys_dir: Path) -> int:
    """Collect the private half of every signing key in `keys_dir`; return how many keys."""
    pems = sorted(keys_dir.glob("*.pem"))
    for pem in pems:
        private = RSAKey.import_key(pem.read_bytes()).as_dict(private=True)
        for member in ("d", "p", "q", "dp", "dq", "qi"):
            secrets.add(f"signing key {pem.stem}, private member {member}", private[member])
        # The PEM as a log would print it, line by line; the first line is mostly ASN.1
        # framing and the public modulus, the last may be short.
        body = [line for line in pem.read_text().splitlines() if not line.startswith("-----")]
        for number, line in enumerate(body[1:-1], start=2):
            secrets.add(f"signing key {pem.stem}, PEM line {number}", line, whole_only=True)
    return len(pems)


# -- the journey, phase by phase -------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    """A client as the operator registered it."""

    client_id: str
    client_secret: str

    @property
    def auth(self) -> tuple[str, str]:
        return self.client_id, self.client_secret


def operator_registers_clients(run: Run, app: RelyingApp) -> tuple[Registered, Registered, str]:
    """`clients create` a web app and a service (a resource server), then `clients rotate-secret`
    the service's; return the web app, the service, and the service's rotated-out secret."""
    secrets = run.secrets
    printed = run.flask(
        "clients",
        "create",
        "Acme Notes",
        "--confidential",
        "--redirect-uri",
        app.redirect_uri,
        "--post-logout-redirect-uri",
        app.signed_out_uri,
        "--scope",
        OIDC_SCOPE,
        prints="web app's client secret",
    )
    web = Registered(client_id_in(printed), secrets.values["web app's client secret"])
    assert printed == f"client_id: {web.client_id}\nclient_secret: {web.client_secret}\n"
    add_basic_credentials(secrets, "web app's Basic credentials", *web.auth)

    printed = run.flask(
        "clients",
        "create",
        "Reports",
        "--scope",
        "read",
        "--audience",
        run.url,
        "--introspect",
        prints="service's first client secret",
    )
    first = Registered(client_id_in(printed), secrets.values["service's first client secret"])
    assert printed == f"client_id: {first.client_id}\nclient_secret: {first.client_secret}\n"
    add_basic_credentials(secrets, "service's first Basic credentials", *first.auth)
    printed = run.flask(
        "clients", "rotate-secret", first.client_id, prints="service's rotated client secret"
    )
    service = Registered(first.client_id, secrets.values["service's rotated client secret"])
    assert printed == f"client_secret: {service.client_secret}\n"
    add_basic_credentials(secrets, "service's Basic credentials", *service.auth)
    return web, service, first.client_secret


def client_id_in(printed: str) -> str:
    found = re.search(r"^client_id: (\S+)$", printed, re.MULTILINE)
    assert found, printed
    return found.group(1)


def account_journey(run: Run, email: str, tag: str) -> tuple[str, dict[str, Any]]:
    """Through /api/v1/auth: register, open the mailed link, verify; log in, refresh, a wrong
    password, log out, a spent refresh token; a reset whose mail SMTP first refuses (the mail
    worker delivers it), its link opened, a new password; log in and out again. Return the new
    password and the last login's tokens."""
    secrets, api, timeout = run.secrets, f"{run.url}{API}", REQUEST_TIMEOUT
    # Characters that URL, form and JSON encoding each change, so every spelling differs.
    password = secrets.add("password at registration", f'Fïrst "pass" wörd/7+?&={tag}')
    wrong_password = secrets.add("wrong password", f"Wrong\\pass wörd 8%41 {tag}")
    new_password = secrets.add("new password", f"Néw-Pässword 9 <&> {tag}")

    def post(path: str, body: dict[str, Any], status: int, **kwargs: Any) -> Any:
        response = requests.post(f"{api}/{path}/", json=body, timeout=timeout, **kwargs)
        return answered(response, status)

    def login(with_password: str, status: int = 200) -> Any:
        return post("login", {"email": email, "password": with_password}, status)

    body = {"email": email, "password": password, "first_name": "Ada", "last_name": "L"}
    post("register", body, 201)
    links = collect_mail(secrets, "verification mail", run.mailbox.wait_for(email)[-1])
    landing = requests.get(links[0], timeout=timeout)  # the page with the button
    assert landing.status_code == 200, landing.text
    post("verify-email", {"token": secrets.values["verification mail, token 1"]}, 200)

    first = login(password)["data"]
    secrets.add_jwt("API access token at login", first["token"])
    secrets.add("API refresh token at login", first["refresh_token"])
    second = post("token/refresh", {"refresh_token": first["refresh_token"]}, 200)["data"]
    secrets.add_jwt("API access token after refresh", second["token"])
    secrets.add("API refresh token after refresh", second["refresh_token"])
    verified = requests.get(
        f"{api}/verify-token/", headers=bearer(second["token"]), timeout=timeout
    )
    answered(verified, 200)
    login(wrong_password, 401)
    body = {"refresh_token": second["refresh_token"]}
    post("logout", body, 200, headers=bearer(second["token"]))
    post("token/refresh", {"refresh_token": first["refresh_token"]}, 401)  # spent

    run.mailbox.data_reply = SMTP_TRY_LATER
    post("password-reset", {"email": email}, 200)
    run.wait_for_log("not delivered (smtp_451)")
    run.mailbox.accept()
    reset_mail = run.mailbox.wait_for(email, count=2, timeout=20)[-1]
    (reset_link,) = collect_mail(secrets, "reset mail", reset_mail)
    landing = requests.get(reset_link, timeout=timeout)
    assert landing.status_code == 200, landing.text
    body = {"token": secrets.values["reset mail, token 1"], "new_password": new_password}
    post("password-reset-confirm", body, 200)

    third = login(new_password)["data"]
    secrets.add_jwt("API access token after reset", third["token"])
    secrets.add("API refresh token after reset", third["refresh_token"])
    # Both tokens in the body this time, no header.
    post("logout", {"token": third["token"], "refresh_token": third["refresh_token"]}, 200)
    return new_password, third


def introspect(run: Run, service: Registered, token: str) -> bool:
    """RFC 7662 by the service, with client_secret_post: its secret in the form body."""
    form = {"token": token, "client_id": service.client_id, "client_secret": service.client_secret}
    response = requests.post(f"{run.url}/oauth/introspect", data=form, timeout=REQUEST_TIMEOUT)
    return answered(response, 200)["active"]


def service_journey(run: Run, service: Registered, rotated_out: str) -> None:
    """client_credentials with the rotated-out secret (refused), then with the new one; the
    token introspected, revoked (RFC 7009), introspected again."""
    url, timeout = run.url, REQUEST_TIMEOUT
    grant = {"grant_type": "client_credentials", "scope": "read"}
    old_auth = (service.client_id, rotated_out)
    refused = requests.post(f"{url}/oauth/token", data=grant, auth=old_auth, timeout=timeout)
    assert answered(refused, 401)["error"] == "invalid_client"
    issued = requests.post(f"{url}/oauth/token", data=grant, auth=service.auth, timeout=timeout)
    token = answered(issued, 200)["access_token"]
    run.secrets.add_jwt("client_credentials access token", token)
    assert introspect(run, service, token) is True
    form = {"token": token, "token_type_hint": "access_token"}
    revoked = requests.post(f"{url}/oauth/revoke", data=form, auth=service.auth, timeout=timeout)
    answered(revoked, 200)
    assert introspect(run, service, token) is False


def openid_connect_journey(
    run: Run, app: RelyingApp, web: Registered, service: Registered, email: str, password: str
) -> str:
    """The app sends the browser to idp; sign in (the password in a form), consent, back to the
    app with a code, which the app redeems with its PKCE verifier; userinfo, introspection, a
    refresh, a revocation, the code replayed; RP-initiated logout with the ID token as a hint in
    the query string. Return the first access token."""
    secrets, url, timeout = run.secrets, run.url, REQUEST_TIMEOUT
    browser = requests.Session()
    signin = browser.get(f"{app.url}/login", timeout=timeout)
    assert urlsplit(signin.url).path == "/signin", signin.url
    origin = {"Origin": url}
    form = {
        "csrf_token": csrf_token(signin.text),
        "interaction": hidden(signin.text, "interaction"),
        "email": email,
        "password": password,
    }
    secrets.add("sign-in form's CSRF token", form["csrf_token"])
    consent = browser.post(f"{url}/signin", data=form, headers=origin, timeout=timeout)
    assert urlsplit(consent.url).path == "/consent", (consent.url, consent.text)
    # The browser-session cookie, and any other the pages set (the forms' session).
    assert "idp_session" in browser.cookies, browser.cookies
    for cookie in browser.cookies:
        secrets.add(f"browser cookie {cookie.name}", str(cookie.value))
    form = {
        "csrf_token": csrf_token(consent.text),
        "interaction": hidden(consent.text, "interaction"),
        "account": hidden(consent.text, "account"),
        "approve": "Allow",
    }
    back = browser.post(f"{url}/consent", data=form, headers=origin, timeout=timeout)
    assert back.url.startswith(app.redirect_uri), back.url

    def token_endpoint(form: dict[str, str], status: int = 200) -> Any:
        response = requests.post(f"{url}/oauth/token", data=form, auth=web.auth, timeout=timeout)
        return answered(response, status)

    callback = app.callbacks[-1]
    redeem = {
        "grant_type": "authorization_code",
        "code": secrets.add("authorization code", callback["code"]),
        "redirect_uri": app.redirect_uri,
        "code_verifier": app.logins[callback["state"]].code_verifier,
    }
    secrets.add("PKCE code verifier", redeem["code_verifier"])
    tokens = token_endpoint(redeem)
    access = secrets.add_jwt("OIDC access token", tokens["access_token"])
    id_token = secrets.add_jwt("ID token", tokens["id_token"])
    secrets.add("OIDC refresh token", tokens["refresh_token"])
    userinfo = requests.get(f"{url}/oauth/userinfo", headers=bearer(access), timeout=timeout)
    assert answered(userinfo, 200)["email"] == email
    assert introspect(run, service, access) is True

    refreshed = token_endpoint(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    secrets.add_jwt("OIDC access token after refresh", refreshed["access_token"])
    secrets.add("OIDC refresh token after refresh", refreshed["refresh_token"])
    if "id_token" in refreshed:
        secrets.add_jwt("ID token after refresh", refreshed["id_token"])
    form = {"token": refreshed["refresh_token"], "token_type_hint": "refresh_token"}
    revoked = requests.post(f"{url}/oauth/revoke", data=form, auth=web.auth, timeout=timeout)
    answered(revoked, 200)
    # The code again: refused, and what it minted is revoked.
    assert token_endpoint(redeem, 400)["error"] == "invalid_grant"

    hint = {"id_token_hint": id_token, "post_logout_redirect_uri": app.signed_out_uri}
    signed_out = browser.get(
        f"{url}/oauth/logout", params=hint, allow_redirects=False, timeout=timeout
    )
    assert signed_out.status_code in (302, 303), signed_out.text
    assert signed_out.headers["Location"].startswith(app.signed_out_uri)
    return access


def forged_bearer_tokens(run: Run, api_token: str, oidc_token: str) -> None:
    """Garbage and forged bearer tokens at the API and at userinfo: each refused."""
    secrets, url = run.secrets, run.url
    garbage = secrets.add("garbage bearer token", f"garbage-{token_urlsafe(32)}")
    other_sub = secrets.add_jwt(
        "forged JWT (other sub)", forged(api_token, lambda claims: claims.update(sub="someone"))
    )
    no_claims = secrets.add_jwt("forged JWT (no claims)", forged(oidc_token, dict.clear))
    for token in (garbage, other_sub, no_claims):
        for path in (f"{API}/verify-token/", "/oauth/userinfo"):
            refused = requests.get(f"{url}{path}", headers=bearer(token), timeout=REQUEST_TIMEOUT)
            assert refused.status_code == 401, (path, refused.text)
    refused = requests.post(
        f"{url}{API}/logout/", json={}, headers=bearer(other_sub), timeout=REQUEST_TIMEOUT
    )
    answered(refused, 401)


def metrics_scrapes(run: Run) -> None:
    """GET /metrics once with a wrong token (401), once with IDP_METRICS_TOKEN."""
    wrong = run.secrets.add("wrong metrics token", token_urlsafe(40))
    refused = requests.get(f"{run.url}/metrics", headers=bearer(wrong), timeout=REQUEST_TIMEOUT)
    assert refused.status_code == 401, refused.text
    right = bearer(run.secrets.values["metrics token"])
    scraped = requests.get(f"{run.url}/metrics", headers=right, timeout=REQUEST_TIMEOUT)
    assert scraped.status_code == 200, scraped.text
    assert "idp_logins" in scraped.text


def the_logs_hold_the_run(run: Run, server_log: str, access_log: str) -> None:
    """The search read the run's logs: both workers, the journey's events, an access line per
    request (its path, no query string), each command's own audit line, the mail worker's
    delivery of the mail SMTP refused at first."""
    assert len(set(re.findall(r"idp: worker (\d+) is ready", server_log))) == 2
    # Every line of the server's log is JSON: the production format is the one searched.
    seen = {line["event"] for line in json_lines(server_log) if line["logger"] == "idp.audit"}
    assert seen >= SERVER_EVENTS, SERVER_EVENTS - seen

    access = json_lines(access_log)
    assert all(line["logger"] == "gunicorn.access" for line in access)
    requested = {(line["method"], line["path"], line["status"]) for line in access}
    assert {
        ("POST", f"{API}/login/", 200),
        ("POST", f"{API}/login/", 401),
        ("GET", "/verify-email", 200),
        ("GET", "/reset-password", 200),
        ("POST", "/signin", 303),
        ("POST", "/oauth/token", 200),
        ("GET", "/oauth/logout", 303),
        ("GET", "/metrics", 401),
        ("GET", "/metrics", 200),
    } <= requested, requested
    assert not [line for line in access if "?" in line["path"] or "?" in line["msg"]]

    commands = [output for output in run.outputs if output.name.endswith("stderr")]
    by_command = {
        output.name: {(e["event"], e["actor"]) for e in events(output.text)} for output in commands
    }
    assert by_command == {
        "#1 `flask clients create` stderr": {("client.created", "cli")},
        "#2 `flask clients create` stderr": {("client.created", "cli")},
        "#3 `flask clients rotate-secret` stderr": {("client.secret_rotated", "cli")},
        "#4 `flask keys rotate` stderr": {("key.rotated", "cli")},
        "#5 `flask mail send-pending` stderr": set(),
        "#6 `flask mail status` stderr": set(),
    }
    assert "1 sent" in run.worker_stdout.read_text()


def test_no_log_of_a_whole_run_holds_a_secret_it_handled(run: Run) -> None:
    tag = token_hex(4)
    email = f"secrets-{tag}@example.com"
    app = RelyingApp(f"{run.url}/oauth/authorize", scope=OIDC_SCOPE)
    try:
        web, service, rotated_out = operator_registers_clients(run, app)
        app.client_id, app.client_secret = web.auth
        password, api_tokens = account_journey(run, email, tag)
        service_journey(run, service, rotated_out)
        oidc_token = openid_connect_journey(run, app, web, service, email, password)
    finally:
        app.close()
    forged_bearer_tokens(run, api_tokens["token"], oidc_token)
    metrics_scrapes(run)
    run.flask("keys", "rotate")
    assert "nothing due" in run.flask("mail", "send-pending")
    run.flask("mail", "status")

    # Everything stopped: every line is written, shutdown lines included.
    run.stop_mail_worker()
    run.server.stop()
    assert signing_key_secrets(run.secrets, run.folder / "keys") == 2
    server_log = run.server.error_log.read_text()
    access_log = run.server.access_log.read_text()
    outputs = [
        Output("gunicorn log (master and workers)", server_log),
        Output("access log", access_log),
        Output("mail worker stdout", run.worker_stdout.read_text()),
        Output("mail worker stderr", run.worker_stderr.read_text()),
        *run.outputs,
    ]
    found = leaks(outputs, run.secrets)
    assert not found, "secrets in the logs:\n" + "\n".join(found)
    the_logs_hold_the_run(run, server_log, access_log)
