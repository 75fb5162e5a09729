"""Data and relationships only; rules live in idp.services."""

from idp.models.client import OAuthClient
from idp.models.tokens import OneTimeToken, RefreshSession, RefreshToken, RevokedAccessToken
from idp.models.user import User

__all__ = [
    "OAuthClient",
    "OneTimeToken",
    "RefreshSession",
    "RefreshToken",
    "RevokedAccessToken",
    "User",
]
