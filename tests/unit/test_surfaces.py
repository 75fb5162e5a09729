"""HTTP surfaces: whose policy an answer follows, and what each of idp's surfaces declares."""

from __future__ import annotations

import pytest
from flask import Blueprint, Flask, Response

from idp.http.surfaces import DEFAULT, Surface, current_surface, register


def test_an_answer_follows_its_views_surface_else_the_longest_prefix_else_the_default():
    app = Flask(__name__)
    pages_bp = Blueprint("pages", __name__)
    deep_bp = Blueprint("deep", __name__)

    @pages_bp.get("/elsewhere")  # a view outside its surface's prefixes still follows it
    def elsewhere() -> str:
        return "ok"

    pages = Surface("pages", blueprints=(pages_bp,), prefixes=("/p/",))
    deep = Surface("deep", blueprints=(deep_bp,), prefixes=("/p/deep/",))
    register(app, (pages, deep))

    @app.after_request
    def name_the_surface(response: Response) -> Response:
        response.headers["X-Surface"] = current_surface().name
        return response

    client = app.test_client()
    assert client.get("/elsewhere").headers["X-Surface"] == "pages"
    assert client.get("/p/unknown").headers["X-Surface"] == "pages"  # no view: by prefix
    assert client.get("/p/deep/unknown").headers["X-Surface"] == "deep"  # longest prefix
    assert client.get("/nowhere").headers["X-Surface"] == DEFAULT.name


@pytest.mark.parametrize(
    ("method", "path", "status", "shape", "no_store"),
    [
        ("GET", "/api/v1/auth/nope/", 404, "envelope", True),
        ("GET", "/api/v1/auth/login/", 405, "envelope", True),
        ("GET", "/oauth/nope", 404, "oauth", False),
        ("GET", "/oauth/token", 405, "oauth", False),
        ("POST", "/healthz", 405, "oauth", True),
        ("GET", "/nowhere", 404, "oauth", False),
    ],
)
def test_each_surface_renders_its_own_errors_and_caching(
    client, method, path, status, shape, no_store
):
    response = client.open(path, method=method)
    assert response.status_code == status
    if shape == "envelope":
        assert response.json["success"] is False and "code" in response.json
    else:
        assert set(response.json) == {"error", "error_description"}
    assert (response.headers.get("Cache-Control") == "no-store") is no_store
    assert response.headers["Content-Security-Policy"] == (
        "default-src 'none'; frame-ancestors 'none'"
    )


def test_probes_are_never_cached(client):
    for path in ("/healthz", "/readyz"):
        assert client.get(path).headers["Cache-Control"] == "no-store"
