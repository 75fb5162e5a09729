"""The hosted pages: sign-in, consent, signed-in. Parse the form, call a service, render."""

from __future__ import annotations

import hmac
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, render_template, request, url_for

from idp.api.schemas import LoginParams, check
from idp.clock import utcnow
from idp.errors import EmailNotVerified, IdPError, InvalidCredentials, ValidationFailed
from idp.http.cookies import read_session_cookie, set_session_cookie
from idp.oauth.authorize import Interaction, authorize
from idp.oauth.server import query_client
from idp.pages.forms import ConsentForm, SignInForm, SignOutForm
from idp.pages.guard import refuse_cross_site_posts
from idp.pages.render import error_page, render_page, see_other
from idp.rate_limits import request_site, request_source
from idp.services.registry import get_services

bp = Blueprint("pages", __name__)
bp.before_request(refuse_cross_site_posts)

EXPIRED = "This sign-in request has expired. Go back to the application and start again."
FORM_EXPIRED = "The form expired. Go back to the application and start again."
# What each scope lets an application see, in the user's words.
SCOPE_TEXT = {
    "openid": "Know who you are (a stable, opaque identifier)",
    "profile": "Your name",
    "email": "Your email address",
    "offline_access": "Stay connected while you are away (until you withdraw it)",
}


@bp.get("/signin")
def sign_in_form() -> Response:
    form = SignInForm(
        interaction=request.args.get("interaction", ""),
        email=request.args.get("login_hint", "")[:320],
    )
    return render_page("sign_in.html", form=form)


@bp.post("/signin")
def sign_in() -> Response:
    form = SignInForm()
    if not form.validate_on_submit():
        return render_page("sign_in.html", 400, form=form)
    services = get_services()
    now = utcnow()
    try:
        # The API's rules for the two fields (syntax, control characters such as NUL): what
        # no account can match is refused as a wrong password is, before any look-up.
        params = check(LoginParams, {"email": form.email.data, "password": form.password.data})
        user = services.accounts.authenticate(
            params.email, params.password, now, request_source(), request_site()
        )
    except (ValidationFailed, InvalidCredentials, EmailNotVerified) as error:
        form.password.data = ""
        if isinstance(error, EmailNotVerified):
            return render_page("sign_in.html", error.status, form=form, error=error.message)
        # Fields no account can match are answered as a wrong password is. 400, not the API's
        # 401: a 401 must carry an authentication challenge, and a form shown again has none.
        return render_page("sign_in.html", 400, form=form, error=InvalidCredentials.message)
    previous = services.browser_sessions.find(read_session_cookie(), now)
    started = services.browser_sessions.start(
        user, now, request.headers.get("User-Agent"), request_source()
    )
    if previous is not None:
        # A new cookie at every sign-in (no fixation); the same user keeps their apps.
        services.browser_sessions.replace(previous, started.session, now)
    interaction = form.interaction.data
    target = (
        f"{url_for('oauth_browser.authorize_continue')}?{urlencode({'interaction': interaction})}"
        if interaction
        else url_for("pages.signed_in")
    )
    response = see_other(target)
    set_session_cookie(response, started.cookie_value, services.settings.browser_session_max_age)
    return response


@bp.get("/signed-in")
def signed_in() -> Response:
    session = get_services().browser_sessions.find(read_session_cookie(), utcnow())
    if session is None:
        return see_other(url_for("pages.sign_in_form"))
    return render_page("signed_in.html", email=session.user.email, form=SignOutForm())


@bp.get("/consent")
def consent_form() -> Response:
    interaction = Interaction.load(request.args.get("interaction"))
    if interaction is None:
        return error_page(EXPIRED, 400)
    session = get_services().browser_sessions.find(read_session_cookie(), utcnow())
    client = query_client(interaction.params.get("client_id", ""))
    if session is None or client is None:
        return error_page(EXPIRED, 400)
    scopes = client.get_allowed_scope(interaction.params.get("scope")).split()
    form = ConsentForm(interaction=request.args.get("interaction"), account=session.user.public_id)
    return render_page(
        "consent.html",
        form=form,
        client_name=client.name,
        email=session.user.email,
        scopes=[(scope, SCOPE_TEXT.get(scope, scope)) for scope in scopes],
    )


@bp.post("/consent")
def consent() -> Response:
    form = ConsentForm()
    if not form.validate_on_submit():
        return error_page(FORM_EXPIRED, 400)
    interaction = Interaction.load(form.interaction.data)
    services = get_services()
    now = utcnow()
    session = services.browser_sessions.find(read_session_cookie(), now)
    if interaction is None or session is None:
        return error_page(EXPIRED, 400)
    if not hmac.compare_digest(form.account.data.encode(), session.user.public_id.encode()):
        # Another account signed in since this page was shown (another tab, a shared device).
        return error_page(EXPIRED, 400)
    params = interaction.params
    if form.deny.data:
        return authorize(params, session, now, interaction.since, denied=True)
    if not form.approve.data:
        # Neither button: nothing was decided, so nothing is granted.
        return error_page(FORM_EXPIRED, 400)
    client = query_client(params.get("client_id", ""))
    if client is None:
        return error_page(EXPIRED, 400)
    scope = client.get_allowed_scope(params.get("scope"))
    services.authorizations.grant_consent(session.user, client.client_id, scope, now)
    return authorize(params, session, now, interaction.since)


@bp.get("/favicon.ico")
def favicon() -> Response:
    # Browsers ask on every page; an empty answer they may cache beats a 404 per page.
    response = Response(status=204)
    response.cache_control.public = True
    response.cache_control.max_age = 86400
    return response


@bp.get("/pages/style.css")
def stylesheet() -> Response:
    settings = current_app.config["IDP"]
    css = render_template("pages/style.css", brand_color=settings.brand_color)
    response = Response(css, mimetype="text/css")
    response.cache_control.public = True
    response.cache_control.max_age = 3600
    return response


def page_error(error: IdPError) -> Response:
    return error_page(error.message, error.status)
