"""OAuth endpoints and discovery documents."""

from idp.oauth.views import bp

__all__ = ["bp"]
