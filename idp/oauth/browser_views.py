"""/oauth/authorize and /oauth/logout: the OAuth endpoints a browser visits (cookie, pages)."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer

from idp.clock import utcnow
from idp.http.cookies import clear_session_cookie, read_session_cookie
from idp.oauth.authorize import Interaction, authorize, request_parameters
from idp.oauth.logout import HINT_MAX, LogoutRequestError, check_logout_request
from idp.pages.forms import SignOutForm
from idp.pages.guard import refuse_cross_site_posts
from idp.pages.render import error_page, render_page, see_other
from idp.services.browser_sessions import SIGNED_OUT
from idp.services.registry import get_services

# No blanket Origin check: an app may POST an authorization or logout request from its own
# site (OIDC Core 3.1.2.1, RP-Initiated Logout 2). Only our confirmation form checks it.
bp = Blueprint("oauth_browser", __name__)
FORM_EXPIRED = "The form expired. Reload the page and try again."

LOGOUT_PARAMETERS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state")
LOGOUT_SALT = "idp.oauth.logout.confirm"
LOGOUT_MAX_AGE = 15 * 60


@bp.route("/oauth/authorize", methods=["GET", "POST"])
def authorize_view() -> Response:
    # OIDC Core 3.1.2.1: GET with a query, or POST with a form body.
    values = request.form if request.method == "POST" else request.args
    params = request_parameters(values)
    if isinstance(params, Response):
        return params
    if request.method == "POST" and read_session_cookie() is None:
        return _as_get("oauth_browser.authorize_view", params)
    now = utcnow()
    session = get_services().browser_sessions.find(read_session_cookie(), now)
    return authorize(params, session, now)


@bp.get("/oauth/authorize/continue")
def authorize_continue() -> Response:
    interaction = Interaction.load(request.args.get("interaction"))
    if interaction is None:
        return error_page(
            "This sign-in request has expired. Go back to the application and start again.", 400
        )
    now = utcnow()
    session = get_services().browser_sessions.find(read_session_cookie(), now)
    return authorize(interaction.params, session, now, interaction.since)


@bp.get("/oauth/logout")
def logout_view() -> Response:
    params = request_parameters(request.args, LOGOUT_PARAMETERS, HINT_MAX)
    if isinstance(params, Response):
        return params
    return _logout(params, confirmed=False)


@bp.post("/oauth/logout")
def logout_confirmed() -> Response:
    if "csrf_token" not in request.form and "logout" not in request.form:
        # RP-Initiated Logout 1.0 2: an app may POST its logout request (form-encoded).
        params = request_parameters(request.form, LOGOUT_PARAMETERS, HINT_MAX)
        if isinstance(params, Response):
            return params
        if read_session_cookie() is None:
            return _as_get("oauth_browser.logout_view", params)
        return _logout(params, confirmed=False)
    # The user's answer on our confirmation page: our own form, from our own origin.
    refuse_cross_site_posts()
    form = SignOutForm()
    if not form.validate_on_submit():
        return error_page(FORM_EXPIRED, 400)
    try:
        params = (
            _serializer().loads(form.logout.data, max_age=LOGOUT_MAX_AGE)
            if form.logout.data
            else {}
        )
    except BadSignature:
        return error_page(FORM_EXPIRED, 400)
    return _logout(params, confirmed=True)


def _logout(params: dict[str, str], confirmed: bool) -> Response:
    """End the browser's session when the user confirmed or the hint names it; else ask."""
    try:
        checked = check_logout_request(params)
    except LogoutRequestError as exc:
        return error_page(str(exc), 400)
    now = utcnow()
    services = get_services()
    session = services.browser_sessions.find(read_session_cookie(), now)
    if session is not None and (confirmed or checked.names(session)):
        services.browser_sessions.end(session, SIGNED_OUT, now)
        session = None
    if session is None:
        return _signed_out(checked.final_redirect())
    form = SignOutForm(logout=_serializer().dumps(params))
    return render_page("sign_out.html", form=form, email=session.user.email)


def _as_get(endpoint: str, params: dict[str, str]) -> Response:
    """Send a cookie-less POST on as the same GET.

    An app's form POST comes from its own site, so the browser sends no SameSite=Lax cookie
    with it, and idp would not see the sign-in it is about: SSO would not apply, and a sign-out
    would end nothing while saying it had. The browser follows a 303 with a top-level GET,
    which does carry the cookie.
    """
    return see_other(f"{url_for(endpoint)}?{urlencode(params)}")


def _signed_out(target: str | None) -> Response:
    response = see_other(target) if target else render_page("signed_out.html")
    clear_session_cookie(response)
    return response


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=LOGOUT_SALT)
