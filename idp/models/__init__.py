"""Data and relationships only; rules live in idp.services."""

from idp.models.authorization import AuthorizationCode, Consent
from idp.models.browser import BrowserSession
from idp.models.client import OAuthClient
from idp.models.outbox import OutboxMail
from idp.models.tokens import OneTimeToken, RefreshSession, RefreshToken, RevokedAccessToken
from idp.models.user import User

__all__ = [
    "AuthorizationCode",
    "BrowserSession",
    "Consent",
    "OAuthClient",
    "OneTimeToken",
    "OutboxMail",
    "RefreshSession",
    "RefreshToken",
    "RevokedAccessToken",
    "User",
]
