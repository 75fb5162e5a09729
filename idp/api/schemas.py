"""Request shapes for /api/v1/auth: types, lengths, syntax. Business rules live in services."""

from __future__ import annotations

import json
import unicodedata
from typing import Annotated, Any, ClassVar, TypeVar

from email_validator import EmailNotValidError, validate_email
from flask import request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from werkzeug.exceptions import BadRequest

from idp.errors import MalformedRequest, UnsupportedMediaType, ValidationFailed
from idp.services.passwords import password_policy_errors

# Generous enough for any real password, small enough that nothing large reaches Argon2;
# the policy (idp.services.passwords) applies the real maximum.
MAX_PASSWORD_INPUT = 1024


def _no_control_characters(value: str) -> str:
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("must not contain control characters")
    return value


# Invisible characters that change how text around them reads: bidi overrides, zero-width
# joiners and spaces (Cf), line and paragraph separators (Zl, Zp). A name with them is shown
# in mails and by relying apps as something other than what it is.
# The zero-width non-joiner and joiner stay: Persian, Indic scripts and emoji need them.
_INVISIBLE = frozenset({"Cf", "Zl", "Zp"})
_SCRIPT_JOINERS = frozenset({"\u200c", "\u200d"})


def _printable_text(value: str) -> str:
    _no_control_characters(value)
    if any(unicodedata.category(ch) in _INVISIBLE and ch not in _SCRIPT_JOINERS for ch in value):
        raise ValueError("must not contain invisible formatting characters")
    return value


def _name(value: str) -> str:
    value = _printable_text(value).strip()
    if not value:
        raise ValueError("must not be blank")
    return value


def _email(value: str) -> str:
    # Trimmed first: a pasted address often ends in a tab or a newline.
    value = value.strip()
    _no_control_characters(value)
    try:
        # Syntax only (no DNS from a request thread). ASCII local parts only (no SMTPUTF8): a
        # Unicode look-alike of an address could otherwise register a second account. Strict:
        # a local part over 64 characters (RFC 5321 4.5.3.1.1) could never receive our mail.
        return validate_email(
            value, check_deliverability=False, allow_smtputf8=False, strict=True
        ).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc


def _password(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(_email)]
Name = Annotated[str, Field(min_length=1, max_length=150), AfterValidator(_name)]
Password = Annotated[
    str, Field(min_length=1, max_length=MAX_PASSWORD_INPUT), AfterValidator(_password)
]
# Our secrets are URL-safe base64; anything else cannot be one of ours.
Secret = Annotated[str, Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
BearerLike = Annotated[str, Field(min_length=1, max_length=4096)]


class Params(BaseModel):
    # Strict: "123" is not an int and 123 is not a string. Unknown fields are ignored.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    # Fields holding a password being chosen: their policy is reported with the shape's errors.
    new_password_fields: ClassVar[tuple[str, ...]] = ()


class RegisterParams(Params):
    new_password_fields = ("password",)

    email: Email
    password: Password
    first_name: Name
    last_name: Name
    company_name: Annotated[str, Field(max_length=200), AfterValidator(_printable_text)] | None = (
        None
    )


class EmailParams(Params):
    email: Email


class LoginParams(Params):
    email: Email
    password: Password


class TokenParams(Params):
    token: Secret


class RefreshParams(Params):
    refresh_token: Secret


class LogoutParams(Params):
    token: BearerLike | None = None
    refresh_token: Secret | None = None


class PasswordResetConfirmParams(Params):
    new_password_fields = ("new_password",)

    token: Secret
    new_password: Password


P = TypeVar("P", bound=Params)


def parse(params_class: type[P], *, body_optional: bool = False) -> P:
    """Parse the JSON body into a params object, or raise the matching 400/415 error."""
    return check(params_class, _json_body(body_optional))


def _json_body(optional: bool) -> Any:
    if optional and not request.content_length and not request.content_type:
        return {}
    if request.mimetype != "application/json":
        raise UnsupportedMediaType()
    # RFC 8259 8.1: JSON between systems is UTF-8; any other charset is refused, not guessed.
    if request.mimetype_params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        raise UnsupportedMediaType()
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # RFC 9110 15.5.16: an unsupported content coding is a 415 that says what is accepted.
        raise UnsupportedMediaType(headers={"Accept-Encoding": "identity"})
    try:
        text = request.get_data(cache=True).decode("utf-8-sig")
        if optional and not text.strip():
            # An empty body sent with a JSON content type (many HTTP clients add the header).
            return {}
        payload = json.loads(text, object_pairs_hook=_unique_names, parse_constant=_no_constant)
    except (BadRequest, ValueError, RecursionError) as exc:
        # ValueError: not UTF-8, not JSON, a repeated name, NaN/Infinity, an integer too long.
        # RecursionError: nesting deeper than the JSON parser goes, e.g. "[[[[..." in 64 KiB.
        raise MalformedRequest() from exc
    if not isinstance(payload, dict):
        raise MalformedRequest()
    return payload


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object naming a member twice is ambiguous (RFC 8259 4): refuse it, never pick one."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate name in a JSON object")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _field_errors(exc: ValidationError) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False):
        field = str(error["loc"][0]) if error["loc"] else "body"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "This field is required."
        elif error["type"] == "string_pattern_mismatch":
            message = "Invalid format."
        errors.setdefault(field, []).append(message)
    return errors


def check(model: type[P], data: dict[str, Any]) -> P:
    """Validate fields with a request shape; raise ValidationFailed with every field's errors.

    The hosted pages take the same input as the API and hold it to the same rules. When other
    fields are wrong, a new password's policy problems are reported with them, not on the
    next try (the service checks the policy again, with the address, once the shape is right).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = _field_errors(exc)
        for field in model.new_password_fields:
            value = data.get(field)
            if field not in errors and isinstance(value, str):
                email = data.get("email") if isinstance(data.get("email"), str) else None
                problems = password_policy_errors(value, email)
                if problems:
                    errors[field] = problems
        raise ValidationFailed(errors=errors) from exc
