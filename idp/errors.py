"""Domain errors. Each knows its stable code, HTTP status and a message safe to show a caller.

No Flask in here: services raise these, and one handler per surface translates them.
"""

from __future__ import annotations

from typing import Any


class ConfigurationError(RuntimeError):
    """The server was configured in a way it refuses to run with."""


class IdPError(Exception):
    """Base of every error a caller may see."""

    code = "server_error"
    # The `error` of an answer outside the API (RFC 6749 shape), when it differs from `code`.
    oauth_code: str | None = None
    status = 500
    message = "The server could not complete the request."

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.errors = errors
        self.headers = headers or {}
        super().__init__(self.message)


class ValidationFailed(IdPError):
    code = "validation_error"
    status = 400
    message = "The request is invalid."


class MalformedRequest(IdPError):
    code = "malformed_request"
    status = 400
    message = "The request body must be a JSON object."


class PayloadTooLarge(IdPError):
    code = "payload_too_large"
    status = 413
    message = "The request body is too large."


class UnsupportedMediaType(IdPError):
    code = "unsupported_media_type"
    status = 415
    message = "The request body must be application/json."


class NotFound(IdPError):
    code = "not_found"
    status = 404
    message = "The requested resource does not exist."


class MethodNotAllowed(IdPError):
    code = "method_not_allowed"
    status = 405
    message = "The method is not allowed for this resource."


class EmailAlreadyRegistered(IdPError):
    code = "email_exists"
    status = 409
    message = "An account with this email address already exists."


class InvalidCredentials(IdPError):
    code = "invalid_credentials"
    status = 401
    message = "Invalid email or password."


class EmailNotVerified(IdPError):
    code = "email_not_verified"
    status = 403
    message = "The email address has not been verified yet."


class InvalidOneTimeToken(IdPError):
    code = "invalid_token"
    status = 400
    message = "The link is invalid or has expired."


class InvalidAccessToken(IdPError):
    code = "invalid_token"
    status = 401
    message = "The access token is missing, invalid, expired or revoked."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        super().__init__(message, **kwargs)


class MissingAccessToken(InvalidAccessToken):
    code = "missing_token"
    message = "An access token is required."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        # RFC 6750 section 3.1: no error code when the request carried no credentials.
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class InsufficientScope(IdPError):
    code = "insufficient_scope"
    status = 403
    message = "The access token does not grant the required scope."

    def __init__(self, scope: str) -> None:
        super().__init__(
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'}
        )


class InvalidRefreshToken(IdPError):
    code = "invalid_refresh_token"
    status = 401
    message = "The refresh token is invalid, expired or revoked."


class InvalidAuthorizationCode(IdPError):
    code = "invalid_grant"
    status = 400
    message = "The authorization code is invalid, expired or already used."


class TokenMismatch(IdPError):
    code = "token_mismatch"
    status = 400
    message = "The tokens in the request do not belong to the same session."


class RateLimited(IdPError):
    code = "rate_limited"
    status = 429
    message = "Too many requests. Try again later."

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        self.retry_after = max(1, retry_after)
        super().__init__(message, headers={"Retry-After": str(self.retry_after)})


class TooManyFailedLogins(RateLimited):
    """Failed logins for one email address, from anywhere, hit the per-account limit."""

    code = "rate_limited"


class ServiceUnavailable(IdPError):
    """A dependency the request needs (the database) cannot be reached right now."""

    code = "service_unavailable"
    oauth_code = "temporarily_unavailable"
    status = 503
    message = "The service is temporarily unavailable. Try again shortly."

    def __init__(self, retry_after: int = 5, message: str | None = None) -> None:
        self.retry_after = max(1, retry_after)
        super().__init__(message, headers={"Retry-After": str(self.retry_after)})


class SigningKeyError(IdPError):
    code = "signing_key_error"
    status = 500
    message = "The server has no usable signing key."
