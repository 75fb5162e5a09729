"""The authorization_code grant (RFC 6749 4.1) with PKCE (RFC 7636) and ID tokens (OIDC Core 3.1).

Authlib validates the requests (client, redirect URI, response type, scope, PKCE, nonce); the
codes, sessions and tokens are our services'.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, OpenIDCode
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt

from idp.clock import utcnow
from idp.errors import InvalidAuthorizationCode
from idp.oauth.resource import InvalidTargetError, token_audience
from idp.oauth.userinfo import user_claims
from idp.services.keys import ALGORITHM
from idp.services.registry import get_services

S256 = "S256"


class PresentedCode(AuthorizationCodeMixin):
    """Authlib's view of a stored code (idp.services.authorizations.StoredCode)."""

    def __init__(self, row: Any) -> None:
        self.row = row
        self.user = row.user
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return int(self.row.auth_time.timestamp())

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """Codes issued by idp.oauth.authorize, redeemed here once."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def save_authorization_code(self, code: str, request: Any) -> None:
        raise NotImplementedError("codes are issued by idp.oauth.authorize")

    def query_authorization_code(self, code: str, client: Any) -> Any:
        try:
            row = get_services().authorizations.find_code(code, client.get_client_id(), utcnow())
        except InvalidAuthorizationCode:
            return None  # Authlib answers invalid_grant
        return PresentedCode(row)

    def delete_authorization_code(self, authorization_code: Any) -> None:
        """Nothing to delete: redemption marks the code spent (kept to catch a replay)."""

    def authenticate_user(self, authorization_code: Any) -> Any:
        return authorization_code.user

    @hooked
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        row = self.request.authorization_code.row
        # RFC 8707: a resource named here must be the one the authorization asked for, if any.
        asked = self.request.form.get("resource")
        if asked is not None and row.resource is not None and asked != row.resource:
            raise InvalidTargetError("The resource differs from the authorization request's.")
        audience = token_audience(self.request.client, asked or row.resource)
        try:
            redemption = get_services().authorizations.redeem(row, utcnow(), audience)
        except InvalidAuthorizationCode as exc:
            raise InvalidGrantError("Invalid 'code' in request.") from exc
        self.request.user = redemption.user
        self.request.redemption = redemption
        pair = redemption.tokens
        token: dict[str, Any] = {
            "access_token": pair.access_token,
            "token_type": "Bearer",
            "expires_in": pair.expires_in,
            "scope": pair.scope,
        }
        if pair.refresh_token is not None:
            token["refresh_token"] = pair.refresh_token
        return 200, token, self.TOKEN_RESPONSE_HEADER


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only (RFC 9700 2.1.1): `plain` shows the verifier to whoever sees the
    request, and a missing method means `plain` (RFC 7636 4.3). Required of public clients."""

    SUPPORTED_CODE_CHALLENGE_METHOD = [S256]
    DEFAULT_CODE_CHALLENGE_METHOD = S256

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        request = grant.request
        challenge = request.payload.data.get("code_challenge")
        method = request.payload.data.get("code_challenge_method")
        if challenge and method != S256:
            raise InvalidRequestError("code_challenge_method must be S256.")
        if not challenge and grant.request.client.is_public:
            raise InvalidRequestError("A public client must send a PKCE code_challenge (S256).")
        super().validate_code_challenge(grant, redirect_uri)


class IDToken(OpenIDCode):
    """ID tokens signed with the access tokens' keys (RS256, same kid)."""

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        # A nonce protects the relying app against replaying an ID token; codes are single
        # use, so a repeated nonce in a new authorization request is the app's affair.
        return False

    def generate_user_info(self, user: Any, scope: str) -> dict[str, Any]:
        return user_claims(user, set(scope.split()))

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        services = get_services()
        redemption = request.redemption
        issued_at = int(utcnow().timestamp())
        client_id = request.client.get_client_id()
        claims: dict[str, Any] = {
            "iss": services.settings.issuer,
            "sub": redemption.user.public_id,
            "aud": client_id,
            "azp": client_id,
            "exp": issued_at + services.settings.access_token_ttl,
            "iat": issued_at,
            "auth_time": int(redemption.auth_time.timestamp()),
            "sid": redemption.browser_session_id,
        }
        if redemption.nonce:
            claims["nonce"] = redemption.nonce
        at_hash = create_half_hash(token["access_token"], ALGORITHM)
        claims["at_hash"] = at_hash.decode("ascii")
        claims.update(self.generate_user_info(redemption.user, token["scope"]))
        kid, key = services.keys.signing_key()
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": kid}
        return jwt.encode(header, claims, key, algorithms=[ALGORITHM])
