"""GET /api/v1/openapi.json: the OpenAPI 3.1 description of /api/v1/auth and the OAuth side."""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Response

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

# A static file, read once; tests/api/test_openapi.py keeps it true to the routes and answers.
DOCUMENT = files("idp.api").joinpath("openapi.json").read_bytes()
MAX_AGE = 300  # the same as JWKS: public, and changes only with a release


@bp.get("/openapi.json")
def openapi_document() -> Response:
    response = Response(DOCUMENT, mimetype="application/json")
    response.cache_control.public = True
    response.cache_control.max_age = MAX_AGE
    return response
