"""The account pages: sign-up, "check your mail", the mailed links' landings, password reset.

The same rules as /api/v1/auth through the same services and request shapes: rate limits,
password policy, enumeration-resistant answers, audit events. A mailed link opens a page with a
button; only pressing it spends the link, so a mail scanner that fetches links spends nothing.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, Response, request, url_for

from idp.api.schemas import (
    EmailParams,
    PasswordResetConfirmParams,
    RegisterParams,
    TokenParams,
    check,
)
from idp.clock import utcnow
from idp.errors import EmailAlreadyRegistered, InvalidOneTimeToken, ValidationFailed
from idp.pages.account_forms import (
    ConfirmEmailForm,
    ForgotPasswordForm,
    NewPasswordForm,
    SignUpForm,
)
from idp.pages.guard import refuse_cross_site_posts
from idp.pages.render import render_page, see_other
from idp.services.registry import get_services

bp = Blueprint("account_pages", __name__)
bp.before_request(refuse_cross_site_posts)

EXPIRED_FORM = "The form expired. Please try again."
BAD_LINK = "This link is invalid, has expired, or was used already. Ask for a new one."
BAD_VERIFY_LINK = (
    "This link is invalid, has expired, or was used already. If you confirmed your address "
    "already, simply sign in."
)


@bp.get("/signup")
def sign_up_form() -> Response:
    form = SignUpForm(interaction=request.args.get("interaction", ""))
    return render_page("sign_up.html", form=form, errors={})


@bp.post("/signup")
def sign_up() -> Response:
    form = SignUpForm()
    if not form.validate_on_submit():
        return render_page("sign_up.html", 400, form=form, errors=_csrf_errors(form))
    try:
        params = check(
            RegisterParams,
            {
                "email": form.email.data,
                "password": form.password.data,
                "first_name": form.first_name.data,
                "last_name": form.last_name.data,
            },
        )
        get_services().accounts.register(**params.model_dump(), now=utcnow())
    except ValidationFailed as error:
        form.password.data = ""
        return render_page("sign_up.html", 400, form=form, errors=error.errors or {})
    except EmailAlreadyRegistered as error:
        return render_page("sign_up.html", 409, form=form, errors={}, error=error.message)
    query = urlencode({"interaction": form.interaction.data or ""})
    return see_other(f"{url_for('account_pages.check_mail')}?{query}")


@bp.get("/signup/check-mail")
def check_mail() -> Response:
    interaction = request.args.get("interaction", "")
    sign_in = url_for("pages.sign_in_form")
    if interaction:
        sign_in = f"{sign_in}?{urlencode({'interaction': interaction})}"
    return render_page("check_mail.html", sign_in_url=sign_in)


@bp.get("/verify-email")
def confirm_email_form() -> Response:
    token = request.args.get("token", "")[:128]
    if not get_services().accounts.verification_link_is_live(token, utcnow()):
        return render_page("link_invalid.html", 400, message=BAD_VERIFY_LINK)
    return render_page("verify_email.html", form=ConfirmEmailForm(token=token))


@bp.post("/verify-email")
def confirm_email() -> Response:
    form = ConfirmEmailForm()
    if not form.validate_on_submit():
        return render_page("verify_email.html", 400, form=form, error=EXPIRED_FORM)
    try:
        params = check(TokenParams, {"token": form.token.data})
        get_services().accounts.verify_email(params.token, utcnow())
    except (ValidationFailed, InvalidOneTimeToken):
        return render_page("link_invalid.html", 400, message=BAD_VERIFY_LINK)
    return render_page("email_verified.html")


@bp.get("/forgot-password")
def forgot_password_form() -> Response:
    return render_page("forgot_password.html", form=ForgotPasswordForm(), errors={})


@bp.post("/forgot-password")
def forgot_password() -> Response:
    form = ForgotPasswordForm()
    if not form.validate_on_submit():
        return render_page("forgot_password.html", 400, form=form, errors=_csrf_errors(form))
    try:
        params = check(EmailParams, {"email": form.email.data})
    except ValidationFailed as error:
        return render_page("forgot_password.html", 400, form=form, errors=error.errors or {})
    # The same answer whether or not the address has an account.
    get_services().accounts.request_password_reset(params.email, utcnow())
    return render_page("reset_requested.html")


@bp.get("/reset-password")
def new_password_form() -> Response:
    token = request.args.get("token", "")[:128]
    if not get_services().accounts.reset_link_is_live(token, utcnow()):
        # Said before the user types a new password, not after.
        return render_page("link_invalid.html", 400, message=BAD_LINK)
    return render_page("reset_password.html", form=NewPasswordForm(token=token), errors={})


@bp.post("/reset-password")
def new_password() -> Response:
    form = NewPasswordForm()
    if not form.validate_on_submit():
        return render_page("reset_password.html", 400, form=form, errors=_csrf_errors(form))
    try:
        params = check(
            PasswordResetConfirmParams,
            {"token": form.token.data, "new_password": form.new_password.data},
        )
        get_services().accounts.confirm_password_reset(params.token, params.new_password, utcnow())
    except ValidationFailed as error:
        errors = error.errors or {}
        if "token" in errors:
            return render_page("link_invalid.html", 400, message=BAD_LINK)
        return render_page("reset_password.html", 400, form=form, errors=errors)
    except InvalidOneTimeToken:
        return render_page("link_invalid.html", 400, message=BAD_LINK)
    return render_page("password_changed.html")


@bp.get("/login")
def login() -> Response:
    # The "account exists" mail links here (IDP_FRONTEND_URL unset): the sign-in page.
    return see_other(url_for("pages.sign_in_form"))


def _csrf_errors(form: SignUpForm | ForgotPasswordForm | NewPasswordForm) -> dict[str, list[str]]:
    return {"form": [EXPIRED_FORM]} if form.csrf_token.errors else {}
