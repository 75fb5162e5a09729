"""/oauth/* and /.well-known/*: OAuth and discovery in their RFC wire formats."""

from __future__ import annotations

import hashlib
import json

from flask import Blueprint, Response, current_app, g, jsonify, request

from idp.oauth.bearer import require_token
from idp.oauth.discovery import discovery_document
from idp.oauth.server import authorization_server
from idp.oauth.userinfo import user_claims
from idp.services.registry import get_services

bp = Blueprint("oauth", __name__)

JWKS_MAX_AGE = 300  # relying apps re-read JWKS at least this often; see README "Key rotation"
DISCOVERY_CACHE = "idp.discovery_document"


@bp.before_request
def refuse_repeated_parameters() -> Response | None:
    """RFC 6749 3.1, 3.2: a parameter must not appear twice (which copy would count?)."""
    if request.method != "POST":
        return None
    # The parameters of these endpoints travel in the form body (RFC 6749 4.4.2, 6; RFC 7009
    # 2.1; RFC 7662 2.1). Authlib would also read some from the query string, the query copy
    # first: `?scope=a` beside a body `scope=b` would be two values for one parameter, and a
    # query string ends up in access logs.
    if request.args:
        return _invalid_request("Send the parameters in the form body, not in the query string.")
    if any(len(values) > 1 for values in request.form.listvalues()):
        return _invalid_request("A parameter is repeated.")
    # RFC 6749 2.3: a client must not use more than one authentication method in a request
    # (HTTP Basic and a client_secret in the body could even name two different clients).
    scheme = request.headers.get("Authorization", "").split(None, 1)[:1]
    if scheme and scheme[0].lower() == "basic" and "client_secret" in request.form:
        return _invalid_request("More than one client authentication method is used.")
    return None


def _invalid_request(description: str) -> Response:
    response = jsonify(error="invalid_request", error_description=description)
    response.status_code = 400
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/oauth/token")
def token() -> Response:
    return authorization_server().create_token_response()


@bp.post("/oauth/revoke")
def revoke() -> Response:
    return authorization_server().create_endpoint_response("revocation")


@bp.post("/oauth/introspect")
def introspect() -> Response:
    return authorization_server().create_endpoint_response("introspection")


@bp.route("/oauth/userinfo", methods=["GET", "POST"])
@require_token("openid")
def userinfo() -> Response:
    # OIDC Core 5.3: the claims the token's scopes allow, about the token's user.
    access = g.access_token
    response = jsonify(user_claims(access.user, access.scopes))
    response.headers["Cache-Control"] = "no-store"  # personal data, never in a cache
    return response


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    body, etag = get_services().keys.jwks()
    return _cacheable_json(body, etag)


@bp.get("/.well-known/openid-configuration")
@bp.get("/.well-known/oauth-authorization-server")
def openid_configuration() -> Response:
    document = current_app.extensions.get(DISCOVERY_CACHE)
    if document is None:
        # The settings never change in a running app: serialise once.
        body = json.dumps(discovery_document(get_services().settings)).encode()
        document = current_app.extensions[DISCOVERY_CACHE] = (
            body,
            hashlib.sha256(body).hexdigest(),
        )
    return _cacheable_json(*document)


def _cacheable_json(body: bytes, etag: str) -> Response:
    """A public document: cacheable, readable from any origin, 304 when the copy is current.

    Built by hand rather than through Response.make_conditional: these are the most requested
    documents, and an ETag comparison is all they need.
    """
    headers = {
        "Cache-Control": f"public, max-age={JWKS_MAX_AGE}",
        "ETag": f'"{etag}"',
        # Public documents any origin may read (no credentials, so a wildcard is safe).
        "Access-Control-Allow-Origin": "*",
    }
    if request.if_none_match.contains(etag):
        return Response(status=304, headers=headers)
    return Response(body, headers=headers, mimetype="application/json")
