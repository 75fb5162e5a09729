"""The /api/v1/auth JSON facade."""

from idp.api.require_token import require_token
from idp.api.views import bp

__all__ = ["bp", "require_token"]
