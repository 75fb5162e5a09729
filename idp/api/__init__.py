"""The /api/v1/auth JSON facade."""

from idp.api.views import bp

__all__ = ["bp"]
