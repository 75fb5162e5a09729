from flask import Blueprint, g, jsonify

from idp.oauth.bearer import require_token
from tests.flows import logged_in_user


def _protected_app(make_app):
    app = make_app()
    bp = Blueprint("protected", __name__)

    @bp.get("/reports")
    @require_token(scope="profile")
    def reports():
        return jsonify(user=g.access_token.user.public_id)

    @bp.get("/admin")
    @require_token(scope="admin")
    def admin():
        return jsonify(ok=True)

    app.register_blueprint(bp)
    return app


def test_require_token_protects_any_endpoint(make_app, mailbox):
    client = _protected_app(make_app).test_client()
    user = logged_in_user(client, mailbox)
    assert client.get("/reports").status_code == 401
    ok = client.get("/reports", headers=user.auth)
    assert ok.status_code == 200 and ok.json == {"user": user.user_id}
    denied = client.get("/admin", headers=user.auth)
    assert denied.status_code == 403
    assert denied.json["error"] == "insufficient_scope"
    assert 'scope="admin"' in denied.headers["WWW-Authenticate"]
    client.post("/api/v1/auth/logout/", headers=user.auth)
    assert client.get("/reports", headers=user.auth).status_code == 401
