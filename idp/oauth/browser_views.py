"""/oauth/authorize and /oauth/logout: the OAuth endpoints a browser visits (cookie, pages)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from idp.clock import utcnow
from idp.http.cookies import clear_session_cookie, read_session_cookie
from idp.oauth.authorize import Interaction, authorize, request_parameters
from idp.oauth.logout import LogoutRequestError, check_logout_request
from idp.pages.forms import SignOutForm
from idp.pages.guard import refuse_cross_site_posts
from idp.pages.render import error_page, render_page, see_other
from idp.services.browser_sessions import SIGNED_OUT
from idp.services.registry import get_services

bp = Blueprint("oauth_browser", __name__)
bp.before_request(refuse_cross_site_posts)

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
    params = request_parameters_for_logout()
    if isinstance(params, Response):
        return params
    try:
        checked = check_logout_request(params)
    except LogoutRequestError as exc:
        return error_page(str(exc), 400)
    now = utcnow()
    services = get_services()
    session = services.browser_sessions.find(read_session_cookie(), now)
    if session is None:
        return _signed_out(checked.final_redirect())
    if checked.names(session):
        services.browser_sessions.end(session, SIGNED_OUT, now)
        return _signed_out(checked.final_redirect())
    form = SignOutForm(logout=_serializer().dumps(params))
    return render_page("sign_out.html", form=form, email=session.user.email)


@bp.post("/oauth/logout")
def logout_confirmed() -> Response:
    form = SignOutForm()
    if not form.validate_on_submit():
        return error_page("The form expired. Reload the page and try again.", 400)
    params: dict[str, str] = {}
    if form.logout.data:
        try:
            params = _serializer().loads(form.logout.data, max_age=LOGOUT_MAX_AGE)
        except BadSignature:
            return error_page("The form expired. Reload the page and try again.", 400)
    try:
        checked = check_logout_request(params)
    except LogoutRequestError as exc:
        return error_page(str(exc), 400)
    now = utcnow()
    services = get_services()
    session = services.browser_sessions.find(read_session_cookie(), now)
    if session is not None:
        services.browser_sessions.end(session, SIGNED_OUT, now)
    return _signed_out(checked.final_redirect())


def request_parameters_for_logout() -> dict[str, str] | Response:
    params: dict[str, str] = {}
    for name in LOGOUT_PARAMETERS:
        given = request.args.getlist(name)
        if len(given) > 1:
            return error_page(f"The parameter {name} is repeated.", 400)
        if given and given[0]:
            params[name] = given[0]
    return params


def _signed_out(target: str | None) -> Response:
    response = see_other(target) if target else render_page("signed_out.html")
    clear_session_cookie(response)
    return response


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=LOGOUT_SALT)
