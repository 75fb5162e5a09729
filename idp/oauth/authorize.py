"""The authorization endpoint (RFC 6749 4.1, OpenID Connect Core 3.1.2) as an ordered list of
checks:

1. the client and its redirect URI: until both are known good, an error is shown on idp's own
   page, in idp's words, and never sent anywhere (RFC 6749 4.1.2.1);
2. the request itself (no request object, response type and mode, scope, PKCE, nonce, prompt,
   max_age, id_token_hint): an error goes back to the registered redirect URI with `state` and
   `iss` (RFC 9207);
3. the browser session: sign in when there is none, when `prompt=login` or `max_age` ask, or
   when the id_token_hint names someone else;
4. consent, for clients the admin did not flag first-party, and for any with prompt=consent;
5. a single-use code, sent to the redirect URI with `state` and `iss`.

When the user has to do something (sign in, consent), the checked request travels to the page
and back signed (an "interaction"), with the moment it started: a sign-in or consent given
after that moment satisfies `prompt=login`, `max_age`, `prompt=consent` and an id_token_hint
(which is checked once, and not carried: an ID token has no place in a URL).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oidc.core.errors import (
    ConsentRequiredError,
    LoginRequiredError,
    RequestNotSupportedError,
    RequestURINotSupportedError,
)
from flask import Response, current_app, url_for
from flask import request as flask_request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from idp.models import BrowserSession
from idp.oauth.logout import HINT_MAX, id_token_hint_claims
from idp.oauth.resource import InvalidTargetError, registered_audiences
from idp.oauth.server import authorization_server
from idp.pages.render import error_page, see_other
from idp.services.registry import get_services

INTERACTION_SALT = "idp.oauth.authorize.interaction"
INTERACTION_MAX_AGE = 15 * 60  # long enough to sign up and come back, short enough to forget
PROMPTS = frozenset({"none", "login", "consent", "select_account"})
# What an authorization request may carry that we read; anything else is ignored.
# `request` and `request_uri` are read only to be refused (OIDC Core 6.1, 6.2: an OP that does
# not support them must say so rather than answer without what they carry).
PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "response_mode",
    "resource",
    "id_token_hint",
    "request",
    "request_uri",
)
PARAMETER_MAX = 2048
# An ID token (or a request object) with a long name or address outgrows PARAMETER_MAX.
LONG_PARAMETERS = {"id_token_hint": HINT_MAX, "request": HINT_MAX}
# No '"' or backslash (RFC 6749 A: a URI, scope tokens and response types hold neither), and
# Authlib quotes these in an error's description, which may not hold them (it would raise).
NO_QUOTES = frozenset({"redirect_uri", "response_type", "scope"})
# Checked once and never carried to the pages: it holds the user's address and names.
NOT_CARRIED = ("id_token_hint",)
NONCE_MAX = 255  # the length of authorization_codes.nonce (PostgreSQL refuses a longer one)


@dataclass(frozen=True)
class Interaction:
    """A checked authorization request waiting for the user, and when it started."""

    params: dict[str, str]
    since: datetime

    def token(self) -> str:
        return _serializer().dumps({"p": self.params, "t": self.since.timestamp()})

    @classmethod
    def load(cls, token: str | None) -> Interaction | None:
        if not token or len(token) > 16 * PARAMETER_MAX:
            return None
        try:
            data = _serializer().loads(token, max_age=INTERACTION_MAX_AGE)
            params = {str(k): str(v) for k, v in data["p"].items()}
            return cls(params, datetime.fromtimestamp(float(data["t"]), tz=UTC))
        except (BadSignature, KeyError, TypeError, ValueError, AttributeError):
            return None


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=INTERACTION_SALT)


def request_parameters(
    values: Any, names: tuple[str, ...] = PARAMETERS, limit: int = PARAMETER_MAX
) -> dict[str, str] | Response:
    """A browser request's OAuth parameters (`names`), or the error page for a malformed one:
    a repeated parameter, or one too long (`limit`, or LONG_PARAMETERS) or not printable ASCII."""
    params: dict[str, str] = {}
    for name in names:
        given = values.getlist(name)
        if len(given) > 1:
            return error_page(f"The parameter {name} is repeated.", 400)
        if given and given[0] != "":
            value = given[0]
            # RFC 6749 A: the parameters are printable ASCII (a redirect URI too, encoded).
            # Only the login hint, an address the user may write in any script, is not.
            printable = name == "login_hint" or all(" " <= ch <= "~" for ch in value)
            if name in NO_QUOTES and ('"' in value or "\\" in value):
                printable = False
            if len(value) > LONG_PARAMETERS.get(name, limit) or "\x00" in value or not printable:
                return error_page(f"The parameter {name} is too long or malformed.", 400)
            params[name] = value
    return params


def authorize(
    params: dict[str, str],
    browser: BrowserSession | None,
    now: datetime,
    since: datetime | None = None,
    denied: bool = False,
) -> Response:
    """Answer an authorization request: an error, a page for the user, or a code."""
    services = get_services()
    user = browser.user if browser is not None else None
    try:
        grant = _consent_grant(params, user)
        redirect_uri = grant.redirect_uri
        client = grant.request.client
        _refuse_request_objects(params, redirect_uri)
        _check_request(params, redirect_uri)
        hinted = _hinted_subject(params, client.client_id, redirect_uri)
        scope = grant.request.scope
        if not scope:
            raise InvalidScopeError(redirect_uri=redirect_uri)
        resource = params.get("resource")
        if resource is not None and resource not in registered_audiences(client):
            raise InvalidTargetError(
                "The resource is not one this client's tokens are for.",
                redirect_uri=redirect_uri,
            )
        if denied:
            raise AccessDeniedError(redirect_uri=redirect_uri)
        prompts = set(params.get("prompt", "").split())
        started = since or now
        # OIDC Core 3.1.2.1: the app expects the user its hint names; someone else signed in
        # here signs in again (or, with prompt=none, the app hears login_required).
        someone_else = (
            browser is not None and hinted is not None and hinted != browser.user.public_id
        )
        if browser is None or someone_else or _needs_login(browser, params, prompts, since, now):
            if "none" in prompts:
                raise LoginRequiredError(redirect_uri=redirect_uri)
            return _to_page("pages.sign_in", _interaction(params, started))
        # prompt=consent asks even a first-party client's user, and even when an approval is
        # remembered: only one given after this request started (`started`) answers it.
        asks_consent = "consent" in prompts
        if (not client.first_party or asks_consent) and not services.authorizations.consented(
            browser.user, client.client_id, scope, started if asks_consent else None
        ):
            if "none" in prompts:
                raise ConsentRequiredError(redirect_uri=redirect_uri)
            return _to_page("pages.consent", _interaction(params, started))
    except OAuth2Error as error:
        return _error(error, params)
    code = services.authorizations.issue_code(
        client_id=client.client_id,
        session=browser,
        redirect_uri=redirect_uri,
        scope=scope,
        nonce=params.get("nonce"),
        code_challenge=params.get("code_challenge"),
        code_challenge_method=params.get("code_challenge_method"),
        resource=resource,
        now=now,
    )
    return _to_client(redirect_uri, [("code", code)], params)


def _consent_grant(params: dict[str, str], user: Any) -> Any:
    """Authlib's checks: the client, its redirect URI, response type, scope, PKCE, nonce."""
    try:
        return authorization_server().get_consent_grant(
            request=_oauth_request(params), end_user=user
        )
    except OAuth2Error as error:
        # A request object may hold what the plain parameters lack: once the redirect URI is
        # known good, the app hears that it was not read rather than what seems missing.
        if error.redirect_uri:
            _refuse_request_objects(params, error.redirect_uri)
        raise


def _refuse_request_objects(params: dict[str, str], redirect_uri: str) -> None:
    """OIDC Core 6.1, 6.2: request objects are not supported, and an app that sends one hears so
    (discovery says request_parameter_supported and request_uri_parameter_supported: false)."""
    if "request" in params:
        raise RequestNotSupportedError(
            "Request objects are not supported.", redirect_uri=redirect_uri
        )
    if "request_uri" in params:
        raise RequestURINotSupportedError(
            "request_uri is not supported.", redirect_uri=redirect_uri
        )


def _check_request(params: dict[str, str], redirect_uri: str) -> None:
    """What Authlib does not check: response_mode, prompt values, nonce length, max_age."""
    if params.get("response_mode", "query") != "query":
        raise InvalidRequestError(
            "Only response_mode=query is supported.", redirect_uri=redirect_uri
        )
    prompts = params.get("prompt", "").split()
    unknown = [value for value in prompts if value not in PROMPTS]
    if unknown:
        raise InvalidRequestError(
            f"Unsupported prompt value {unknown[0]!r}.", redirect_uri=redirect_uri
        )
    if "none" in prompts and len(prompts) > 1:
        raise InvalidRequestError("prompt=none stands alone.", redirect_uri=redirect_uri)
    if len(params.get("nonce", "")) > NONCE_MAX:
        raise InvalidRequestError(
            f"nonce is at most {NONCE_MAX} characters.", redirect_uri=redirect_uri
        )
    max_age = params.get("max_age")
    if max_age is not None and not (max_age.isascii() and max_age.isdigit() and len(max_age) < 10):
        raise InvalidRequestError("max_age is a number of seconds.", redirect_uri=redirect_uri)


def _hinted_subject(params: dict[str, str], client_id: str, redirect_uri: str) -> str | None:
    """The `sub` of the id_token_hint: an ID token we issued to this client, expired or not."""
    hint = params.get("id_token_hint")
    if hint is None:
        return None
    claims = id_token_hint_claims(hint)
    audience = claims.get("aud") if claims else None
    audiences = [audience] if isinstance(audience, str) else audience
    subject = claims.get("sub") if claims else None
    if (
        not isinstance(subject, str)
        or not isinstance(audiences, list)
        or client_id not in audiences
    ):
        # Never the hint itself in the description: the app has it, and logs keep descriptions.
        raise InvalidRequestError(
            "The id_token_hint is not an ID token issued here to this client.",
            redirect_uri=redirect_uri,
        )
    return subject


def _needs_login(
    browser: BrowserSession,
    params: dict[str, str],
    prompts: set[str],
    since: datetime | None,
    now: datetime,
) -> bool:
    # A sign-in made after this request started answers prompt=login and max_age.
    if since is not None and browser.auth_time >= since:
        return False
    if prompts & {"login", "select_account"}:
        return True
    max_age = params.get("max_age")
    return max_age is not None and (now - browser.auth_time).total_seconds() > int(max_age)


def _oauth_request(params: dict[str, str]) -> OAuth2Request:
    # The URL only feeds Authlib's transport check, as the token endpoint's request URL does.
    request = OAuth2Request("GET", f"{flask_request.url_root}oauth/authorize")
    request.payload = BasicOAuth2Payload(params)
    return request


def _interaction(params: dict[str, str], started: datetime) -> Interaction:
    """The request to carry to a page and back, without what is checked once only."""
    kept = {name: value for name, value in params.items() if name not in NOT_CARRIED}
    return Interaction(kept, started)


def _to_page(endpoint: str, interaction: Interaction) -> Response:
    query = {"interaction": interaction.token()}
    hint = interaction.params.get("login_hint")
    if hint and endpoint == "pages.sign_in":
        query["login_hint"] = hint
    return see_other(f"{url_for(endpoint)}?{urlencode(query)}")


def _to_client(redirect_uri: str, pairs: list[tuple[str, str]], params: dict[str, str]) -> Response:
    """Send the browser back to a registered redirect URI with `state` and `iss` (RFC 9207)."""
    if "state" in params:
        pairs.append(("state", params["state"]))
    pairs.append(("iss", get_services().settings.issuer))
    return see_other(add_params_to_uri(redirect_uri, pairs))


def _error(error: OAuth2Error, params: dict[str, str]) -> Response:
    if error.redirect_uri:
        pairs = [("error", error.error)]
        if error.description:
            pairs.append(("error_description", error.description))
        return _to_client(error.redirect_uri, pairs, params)
    # The client or its redirect URI is not known good: nothing is sent anywhere.
    return error_page(_page_message(error.error, params), 400)


def _page_message(code: str, params: dict[str, str]) -> str:
    """What idp's own page says about a request it cannot send back, in idp's words only.

    Never Authlib's description: it quotes the request ("Redirect URI … is not supported"), so
    whoever writes the link would write text on idp's page ("call this number…").
    """
    product = get_services().settings.product_name
    if code == "invalid_client":
        if "client_id" not in params:
            return "The request does not say which application it comes from."
        return f"This application is not known to {product}."
    if code == "invalid_request":
        if "redirect_uri" not in params:
            return "The application did not say where to return you."
        return "The application's return address is not registered."
    if code == "unsupported_response_type":
        return f"The application asked for a kind of response {product} does not give."
    return "The application sent an invalid request."
