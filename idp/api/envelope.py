"""The only place the /api/v1/auth envelope {success, message, data?, errors?} is built."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from idp.errors import IdPError


def success(
    message: str, data: dict[str, Any] | None = None, status: int = 200
) -> tuple[Response, int]:
    """Return a successful answer."""
    body: dict[str, Any] = {"success": True, "message": message}
    if data is not None:
        body["data"] = data
    return jsonify(body), status


def failure(
    message: str,
    status: int,
    code: str,
    errors: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Return a failed answer; `code` is stable and meant for programs, `message` for people."""
    body: dict[str, Any] = {"success": False, "message": message, "code": code}
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def from_error(error: IdPError) -> Response:
    """The API surface's rendering of any error (see idp.api.SURFACE)."""
    return failure(error.message, error.status, error.code, error.errors, error.headers)
