"""/api/v1/auth: parse the request, call one service, answer in the envelope."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g

from idp.api import envelope
from idp.api.schemas import (
    EmailParams,
    LoginParams,
    LogoutParams,
    PasswordResetConfirmParams,
    RefreshParams,
    RegisterParams,
    TokenParams,
    parse,
)
from idp.clock import utcnow
from idp.models import User
from idp.oauth.bearer import bearer_token, require_token, verify_request_token
from idp.rate_limits import request_site, request_source
from idp.services.access_tokens import TokenUser
from idp.services.registry import get_services
from idp.services.sessions import TokenPair

bp = Blueprint("api", __name__, url_prefix="/api/v1/auth")

SAME_ANSWER_RESEND = "If the address belongs to an unverified account, a new link is on its way."
SAME_ANSWER_RESET = "If the address belongs to an account, a password reset link is on its way."
# The frontend's landing page shows this; it is also where someone who never registered lands
# after clicking a link they should not have (pre-account hijacking): tell them what to do.
VERIFIED = (
    "Email verified. You can now log in. Did not create this account? Reset its password now "
    "(the mail's second link, or 'forgot password'): that replaces the password chosen at "
    "registration and signs everyone else out."
)


def user_json(user: User | TokenUser) -> dict[str, Any]:
    return {
        "id": user.public_id,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "company_name": user.company_name,
        "email_verified": user.email_verified_at is not None,
    }


def token_json(pair: TokenPair) -> dict[str, Any]:
    return {
        "token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": "Bearer",
        "expires_in": pair.expires_in,
        "user": user_json(pair.user),
    }


@bp.post("/register/")
def register() -> tuple[Response, int]:
    params = parse(RegisterParams)
    user_id = get_services().accounts.register(**params.model_dump(), now=utcnow())
    return envelope.success(
        "Registration successful. Check your email to verify your account.",
        {"user_id": user_id},
        201,
    )


@bp.post("/verify-email/")
def verify_email() -> tuple[Response, int]:
    params = parse(TokenParams)
    get_services().accounts.verify_email(params.token, utcnow())
    return envelope.success(VERIFIED)


@bp.post("/resend-verification/")
def resend_verification() -> tuple[Response, int]:
    params = parse(EmailParams)
    get_services().accounts.resend_verification(params.email, utcnow())
    return envelope.success(SAME_ANSWER_RESEND)


@bp.post("/login/")
def login() -> tuple[Response, int]:
    params = parse(LoginParams)
    pair = get_services().accounts.login(
        params.email, params.password, utcnow(), source=request_source(), site=request_site()
    )
    return envelope.success("Login successful.", token_json(pair))


@bp.post("/token/refresh/")
def refresh() -> tuple[Response, int]:
    params = parse(RefreshParams)
    pair = get_services().accounts.refresh(params.refresh_token, utcnow())
    return envelope.success("Token refreshed.", token_json(pair))


@bp.post("/logout/")
def logout() -> tuple[Response, int]:
    params = parse(LogoutParams, body_optional=True)
    header_token = bearer_token()
    access = verify_request_token(
        header_token or params.token,
        None,
        user_required=True,
        client_id=get_services().settings.api_client_id,
    )
    get_services().sessions.logout(
        access, header_token, params.token, params.refresh_token, utcnow()
    )
    return envelope.success("Logged out.")


@bp.post("/password-reset/")
def password_reset() -> tuple[Response, int]:
    params = parse(EmailParams)
    get_services().accounts.request_password_reset(params.email, utcnow())
    return envelope.success(SAME_ANSWER_RESET)


@bp.post("/password-reset-confirm/")
def password_reset_confirm() -> tuple[Response, int]:
    params = parse(PasswordResetConfirmParams)
    get_services().accounts.confirm_password_reset(params.token, params.new_password, utcnow())
    return envelope.success("Password changed. Every session has been signed out.")


@bp.get("/verify-token/")
@require_token(own_client=True)
def verify_token() -> tuple[Response, int]:
    return envelope.success("Token is valid.", {"user": user_json(g.access_token.user)})


@bp.get("/consents/")
@require_token(own_client=True)
def consents() -> tuple[Response, int]:
    user = g.access_token.user
    approved = get_services().authorizations.list_consents(user.id)
    return envelope.success(
        "The applications you approved.",
        {
            "consents": [
                {
                    "client_id": consent.client_id,
                    "client_name": name,
                    "scope": consent.scope,
                    "granted_at": consent.granted_at.isoformat(timespec="seconds"),
                }
                for consent, name in approved
            ]
        },
    )


@bp.delete("/consents/<client_id>/")
@require_token(own_client=True)
def withdraw_consent(client_id: str) -> tuple[Response, int]:
    get_services().authorizations.withdraw_consent(g.access_token.user, client_id, utcnow())
    return envelope.success("Approval withdrawn. The application was signed out.")
