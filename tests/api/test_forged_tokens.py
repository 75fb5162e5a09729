"""Forged and invalid access tokens at GET /api/v1/auth/verify-token/, from the attacker's side.

Every forged token starts from a baseline that the `forger` fixture has just shown the server
ACCEPTS (signed with the server's real key, right claims, a real user's live session), and then
changes one thing. So each rejection below is caused by that one change, not by a broken helper.

A rejection is always 401 with the envelope `{success: false, message, code}` and a
`WWW-Authenticate: Bearer ...` header. For tokens refused on their signature, header or claims,
we also check that none of the token's claim values (jti, sub, sid, ...) was ever sent to the
database: the refusal happened before any user, session or denylist lookup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import RSAKey
from sqlalchemy import event

from idp import transaction
from idp.extensions import db
from tests.conftest import ISSUER
from tests.flows import API, API_CLIENT_ID, LoggedIn, logged_in_user, verify_token

VERIFY = f"{API}/verify-token/"
API_SCOPE = "profile email"

DROP = object()  # a claim or header value meaning "leave this member out"


# -- building JWS by hand: nothing here refuses to build a bad token ----------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def encode_segment(value: dict[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":")).encode()
    return b64url(raw)


Signer = Callable[[bytes], bytes]


def rsa_signer(private_key: rsa.RSAPrivateKey, alg: str = "RS256") -> Signer:
    hash_alg = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[alg[2:]]
    if alg.startswith("PS"):
        pad: padding.AsymmetricPadding = padding.PSS(
            mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size
        )
    else:
        pad = padding.PKCS1v15()
    return lambda data: private_key.sign(data, pad, hash_alg)


def hmac_signer(secret: bytes, alg: str = "HS256") -> Signer:
    digestmod = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    return lambda data: hmac.new(secret, data, digestmod).digest()


def ec_signer(private_key: ec.EllipticCurvePrivateKey) -> Signer:
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def compact(header: dict[str, Any] | bytes, claims: dict[str, Any] | bytes, signer: Signer) -> str:
    signing_input = f"{encode_segment(header)}.{encode_segment(claims)}"
    return f"{signing_input}.{b64url(signer(signing_input.encode('ascii')))}"


def resign(token: str, signer: Signer) -> str:
    """Keep a token's header and payload bytes, give it a new signature."""
    signing_input = token.rsplit(".", 1)[0]
    return f"{signing_input}.{b64url(signer(signing_input.encode('ascii')))}"


def apply(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = {**base, **changes}
    return {name: value for name, value in merged.items() if value is not DROP}


def payload_of(token: str) -> dict[str, Any]:
    return json.loads(b64url_decode(token.split(".")[1]))


def attacker_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# -- watching the database --------------------------------------------------------------------


class SQLSpy:
    """Record the parameters of every statement the application sends to the database."""

    def __init__(self) -> None:
        self.parameters: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.parameters.append(repr(parameters))

    def clear(self) -> None:
        self.parameters.clear()

    def saw(self, value: str) -> bool:
        return any(value in params for params in self.parameters)


@pytest.fixture
def sql_spy(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[SQLSpy]:
    spy = SQLSpy()
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", spy)
    # Hot-path reads go to psycopg directly on PostgreSQL (idp.database.read_one).
    execute = psycopg.Cursor.execute

    def spied_execute(cursor: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        spy(None, cursor, query, params)
        return execute(cursor, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", spied_execute)
    yield spy
    event.remove(engine, "before_cursor_execute", spy)


# -- the forger ---------------------------------------------------------------------------------


@dataclass
class Forger:
    """Builds access tokens for a real, logged-in user, signed with the server's real key."""

    kid: str
    key: RSAKey
    victim: LoggedIn
    sid: str

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        return self.key.private_key  # type: ignore[return-value]

    def header(self, **changes: Any) -> dict[str, Any]:
        return apply({"alg": "RS256", "typ": "at+jwt", "kid": self.kid}, changes)

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {
            "iss": ISSUER,
            "sub": self.victim.user_id,
            "aud": ISSUER,
            "exp": now + 300,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "client_id": API_CLIENT_ID,
            "scope": API_SCOPE,
            "sid": self.sid,
        }
        return apply(base, changes)

    def token(
        self,
        header: dict[str, Any] | bytes | None = None,
        claims: dict[str, Any] | bytes | None = None,
        signer: Signer | None = None,
    ) -> str:
        return compact(
            self.header() if header is None else header,
            self.claims() if claims is None else claims,
            signer or rsa_signer(self.private_key),
        )


def server_signing_key(app: Flask) -> tuple[str, RSAKey]:
    return app.extensions["idp.services"].keys.signing_key()


@pytest.fixture
def victim(client: FlaskClient, mailbox: Any) -> LoggedIn:
    return logged_in_user(client, mailbox)


@pytest.fixture
def forger(app: Flask, client: FlaskClient, victim: LoggedIn, sql_spy: SQLSpy) -> Forger:
    kid, key = server_signing_key(app)
    forger = Forger(kid, key, victim, payload_of(victim.token)["sid"])
    # The positive control every negative case builds on: the unmodified forgery is accepted...
    baseline = forger.token()
    response = verify_token(client, baseline)
    assert response.status_code == 200, response.json
    assert response.json["data"]["user"]["id"] == victim.user_id
    # ...and the spy really sees what reaches the database (its jti, in the denylist lookup).
    assert sql_spy.saw(payload_of(baseline)["jti"])
    sql_spy.clear()
    return forger


# -- what a refusal looks like ------------------------------------------------------------------


def assert_refused(response: Any, code: str = "invalid_token") -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"success", "message", "code"}, body
    assert body["success"] is False
    assert isinstance(body["message"], str) and body["message"]
    assert body["code"] == code
    challenge = response.headers.get("WWW-Authenticate", "")
    assert challenge.split(" ", 1)[0] == "Bearer", challenge
    if code == "invalid_token":
        assert 'error="invalid_token"' in challenge
    assert response.headers["Cache-Control"] == "no-store"


def claim_markers(token: str) -> list[str]:
    """The string claim values of a token (whatever its signature): they must not reach the DB."""
    try:
        claims = payload_of(token)
    except (ValueError, IndexError):
        return []
    if not isinstance(claims, dict):
        return []
    values = [value for value in claims.values() if isinstance(value, str)]
    return [value for value in values if len(value) >= 8 and value not in (ISSUER, API_CLIENT_ID)]


def refuse(
    client: FlaskClient, spy: SQLSpy, token: str, *, before_db: bool = True, **headers: str
) -> Any:
    """Present a token as Bearer; it must be refused, and (by default) before any DB lookup."""
    spy.clear()
    response = client.get(VERIFY, headers={"Authorization": f"Bearer {token}", **headers})
    assert_refused(response)
    if before_db:
        assert not spy.saw(token[-40:])
        for marker in claim_markers(token):
            assert not spy.saw(marker), f"{marker!r} reached the database"
    return response


# -- positive controls ----------------------------------------------------------------------------


def test_a_correctly_forged_token_for_a_live_session_is_accepted(client, forger, victim):
    response = verify_token(client, forger.token())
    assert response.status_code == 200
    assert response.json["success"] is True
    assert response.json["data"]["user"]["id"] == victim.user_id
    assert response.json["data"]["user"]["email"] == victim.email
    # The forger builds what the server builds: same header and the same claim names.
    server_token = victim.token
    header = json.loads(b64url_decode(server_token.split(".")[0]))
    assert header == forger.header()
    assert set(payload_of(server_token)) == set(forger.claims())


@pytest.mark.parametrize(
    "typ", ["at+jwt", "AT+JWT", "application/at+jwt"], ids=["plain", "upper", "media-type"]
)
def test_the_rfc9068_typ_spellings_are_accepted(client, forger, typ):
    response = verify_token(client, forger.token(header=forger.header(typ=typ)))
    assert response.status_code == 200, response.json


@pytest.mark.parametrize(
    "changes",
    [{"exp": -1}, {"iat": 3}, {"nbf": 3}, {"nbf": 0}],
    ids=["exp-1s-ago", "iat-in-3s", "nbf-in-3s", "nbf-now"],
)
def test_times_within_the_leeway_are_accepted(client, forger, changes):
    """The boundary the expiry tests below cross: up to 5 s of clock skew is tolerated."""
    now = int(time.time())
    claims = forger.claims(**{name: now + delta for name, delta in changes.items()})
    response = verify_token(client, forger.token(claims=claims))
    assert response.status_code == 200, response.json


def test_the_bearer_scheme_is_case_insensitive(client, forger):
    token = forger.token()
    response = client.get(VERIFY, headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200, response.json


# -- alg "none" and algorithm confusion -------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["empty", "real-rs256", "junk"])
def test_alg_none_is_refused(client, forger, sql_spy, alg, signature):
    header = forger.header(alg=alg)
    if signature == "empty":
        token = forger.token(header=header, signer=lambda data: b"")
    elif signature == "real-rs256":
        token = forger.token(header=header)
    else:
        token = forger.token(header=header, signer=lambda data: b"\x00" * 32)
    refuse(client, sql_spy, token)


def test_alg_none_without_kid_or_typ_is_refused(client, forger, sql_spy):
    token = forger.token(header={"alg": "none"}, signer=lambda data: b"")
    refuse(client, sql_spy, token)


def _published_jwk(client: FlaskClient, kid: str) -> tuple[dict[str, Any], bytes]:
    """What an attacker can download: our JWK as served, and the whole JWKS body."""
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    body = response.get_data()
    (jwk,) = [key for key in response.json["keys"] if key["kid"] == kid]
    return jwk, body


def _hmac_secrets(client: FlaskClient, kid: str) -> dict[str, bytes]:
    jwk, jwks_body = _published_jwk(client, kid)
    public = RSAKey.import_key(jwk).public_key
    spki = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pkcs1 = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "pem": spki,
        "pem-no-newline": spki.rstrip(b"\n"),
        "pem-pkcs1": pkcs1,
        "der": der,
        "jwk-json": json.dumps(jwk).encode(),
        "jwk-json-compact": json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode(),
        "jwks-body": jwks_body,
        "modulus-n": jwk["n"].encode(),
    }


HMAC_SECRET_KINDS = [
    "pem",
    "pem-no-newline",
    "pem-pkcs1",
    "der",
    "jwk-json",
    "jwk-json-compact",
    "jwks-body",
    "modulus-n",
]


@pytest.mark.parametrize("alg", ["HS256", "HS512"])
@pytest.mark.parametrize("secret_kind", HMAC_SECRET_KINDS)
def test_hmac_signed_with_our_public_key_is_refused(client, forger, sql_spy, alg, secret_kind):
    secret = _hmac_secrets(client, forger.kid)[secret_kind]
    token = forger.token(header=forger.header(alg=alg), signer=hmac_signer(secret, alg))
    refuse(client, sql_spy, token)


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256", "PS512"])
def test_other_rsa_algorithms_with_our_real_key_are_refused(client, forger, sql_spy, alg):
    """A genuine signature by our key, but under an algorithm the server does not use."""
    token = forger.token(header=forger.header(alg=alg), signer=rsa_signer(forger.private_key, alg))
    refuse(client, sql_spy, token)


@pytest.mark.parametrize(
    "alg",
    ["rs256", "RS256 ", DROP, ["RS256"], None],
    ids=["lower", "space", "missing", "list", "null"],
)
def test_a_misspelled_or_missing_alg_is_refused_even_with_a_real_signature(
    client, forger, sql_spy, alg
):
    refuse(client, sql_spy, forger.token(header=forger.header(alg=alg)))


def test_es256_by_an_attacker_key_under_our_kid_is_refused(client, forger, sql_spy):
    attacker = ec.generate_private_key(ec.SECP256R1())
    token = forger.token(header=forger.header(alg="ES256"), signer=ec_signer(attacker))
    refuse(client, sql_spy, token)


# -- signatures -------------------------------------------------------------------------------


def test_an_attacker_rsa_key_under_our_kid_is_refused(client, forger, sql_spy):
    refuse(client, sql_spy, forger.token(signer=rsa_signer(attacker_rsa_key())))


@pytest.mark.parametrize("damage", ["flip-last-byte", "truncate", "drop-last-char", "doubled"])
def test_a_damaged_signature_is_refused(client, forger, sql_spy, damage):
    token = forger.token()
    head, signature = token.rsplit(".", 1)
    raw = bytearray(b64url_decode(signature))
    if damage == "flip-last-byte":
        raw[-1] ^= 0x01
        forged = f"{head}.{b64url(bytes(raw))}"
    elif damage == "truncate":
        forged = f"{head}.{b64url(bytes(raw[:128]))}"
    elif damage == "drop-last-char":
        forged = f"{head}.{signature[:-1]}"
    else:
        forged = f"{head}.{b64url(bytes(raw) * 2)}"
    refuse(client, sql_spy, forged)


def test_the_signature_of_another_real_token_is_refused(client, forger, sql_spy, victim):
    genuine_signature = victim.token.rsplit(".", 1)[1]
    head = forger.token().rsplit(".", 1)[0]
    refuse(client, sql_spy, f"{head}.{genuine_signature}")


@pytest.fixture
def second_user(client: FlaskClient, mailbox: Any) -> LoggedIn:
    return logged_in_user(client, mailbox)


@pytest.mark.parametrize(
    "tamper",
    ["sub-of-another-user", "sid-of-another-user", "both-of-another-user", "scope", "exp", "aud"],
)
def test_a_tampered_payload_with_the_original_signature_is_refused(
    client, sql_spy, victim, second_user, tamper
):
    """Take a token the server really issued, edit its claims, keep its signature."""
    header, payload, signature = victim.token.split(".")
    claims = json.loads(b64url_decode(payload))
    other = payload_of(second_user.token)
    if tamper == "sub-of-another-user":
        claims["sub"] = second_user.user_id
    elif tamper == "sid-of-another-user":
        claims["sid"] = other["sid"]
    elif tamper == "both-of-another-user":
        claims["sub"], claims["sid"] = second_user.user_id, other["sid"]
    elif tamper == "scope":
        claims["scope"] = "profile email admin"
    elif tamper == "exp":
        claims["exp"] += 365 * 24 * 3600
    else:
        claims["aud"] = "http://other-app.test"
    forged = f"{header}.{encode_segment(claims)}.{signature}"
    refuse(client, sql_spy, forged)
    # The genuine tokens are untouched by the attempt.
    assert verify_token(client, victim.token).status_code == 200
    assert verify_token(client, second_user.token).status_code == 200


def test_a_payload_re_encoded_to_the_same_json_keeps_no_signature(client, sql_spy, victim):
    """Same claims, other bytes (spaces in the JSON): a signature covers bytes, not meaning."""
    header, payload, signature = victim.token.split(".")
    claims = json.loads(b64url_decode(payload))
    spaced = b64url(json.dumps(claims, indent=1).encode())
    refuse(client, sql_spy, f"{header}.{spaced}.{signature}")


# -- kid ----------------------------------------------------------------------------------------


def _kid_variants(kid: str, keys_dir: Path) -> dict[str, Any]:
    return {
        "unknown": secrets.token_urlsafe(32),
        "traversal": "../../etc/passwd",
        "encoded-traversal": "..%2f..%2fetc%2fpasswd",
        "traversal-to-our-key": f"../{keys_dir.name}/{kid}",
        "absolute-path-to-our-key": str(keys_dir / f"{kid}.pem"),
        "with-pem-suffix": f"{kid}.pem",
        "manifest": "manifest.json",
        "trailing-space": f"{kid} ",
        "trailing-nul": f"{kid}\x00",
        "other-case": kid.swapcase(),
        "sql": "' OR '1'='1",
        "empty": "",
        "missing": DROP,
        "null": None,
        "integer": 0,
        "list": [kid],
        "object": {"kid": kid},
    }


KID_CASES = [
    "unknown",
    "traversal",
    "encoded-traversal",
    "traversal-to-our-key",
    "absolute-path-to-our-key",
    "with-pem-suffix",
    "manifest",
    "trailing-space",
    "trailing-nul",
    "other-case",
    "sql",
    "empty",
    "missing",
    "null",
    "integer",
    "list",
    "object",
]


@pytest.mark.parametrize("case", KID_CASES)
def test_a_kid_that_is_not_exactly_one_of_ours_is_refused(client, forger, sql_spy, keys_dir, case):
    """Signed with our real key: only the kid is wrong, and that alone must be enough."""
    kid = _kid_variants(forger.kid, keys_dir)[case]
    refuse(client, sql_spy, forger.token(header=forger.header(kid=kid)))


# -- headers that carry or point at a key -----------------------------------------------------


def _self_signed_cert(private_key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(private_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("member", ["jku", "jwk", "x5u", "x5c", "crit"])
def test_key_carrying_headers_are_refused_even_on_a_genuine_token(client, forger, sql_spy, member):
    """Our kid, our key, a valid signature: the mere presence of these headers is refusal."""
    public_jwk = forger.key.as_dict(private=False)
    values = {
        "jku": f"{ISSUER}/.well-known/jwks.json",
        "jwk": public_jwk,
        "x5u": "https://attacker.example/cert.pem",
        "x5c": [base64.b64encode(b"not really a cert").decode()],
        "crit": ["exp"],
    }
    refuse(client, sql_spy, forger.token(header=forger.header(**{member: values[member]})))


@pytest.mark.parametrize("kid_choice", ["none", "attacker-thumbprint", "our-kid"])
@pytest.mark.parametrize("member", ["jwk", "jku", "x5c", "x5u"])
def test_a_token_naming_the_attackers_own_key_is_refused(
    client, forger, sql_spy, member, kid_choice
):
    """The attacker signs with their key and tells us where to find it (or embeds it)."""
    attacker = attacker_rsa_key()
    attacker_jwk = RSAKey.import_key(
        attacker.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    kids = {
        "none": DROP,
        "attacker-thumbprint": attacker_jwk.thumbprint(),
        "our-kid": forger.kid,
    }
    values = {
        "jwk": {**attacker_jwk.as_dict(private=False), "kid": attacker_jwk.thumbprint()},
        "jku": "https://attacker.example/.well-known/jwks.json",
        "x5c": [base64.b64encode(_self_signed_cert(attacker)).decode()],
        "x5u": "https://attacker.example/cert.pem",
    }
    header = forger.header(kid=kids[kid_choice], **{member: values[member]})
    refuse(client, sql_spy, forger.token(header=header, signer=rsa_signer(attacker)))


@pytest.mark.parametrize("member", [{"zip": "DEF"}, {"enc": "A256GCM"}], ids=["zip", "enc"])
def test_jwe_and_compression_headers_are_refused(client, forger, sql_spy, member):
    refuse(client, sql_spy, forger.token(header=forger.header(**member)))


# -- typ ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typ",
    ["JWT", "jwt", "application/jwt", "id_token", "at+jwt ", "", DROP, None, 1, ["at+jwt"]],
    ids=[
        "JWT",
        "jwt",
        "app-jwt",
        "id_token",
        "trailing-space",
        "empty",
        "missing",
        "null",
        "int",
        "list",
    ],
)
def test_a_token_without_the_access_token_typ_is_refused(client, forger, sql_spy, typ):
    """An ID token (typ JWT) or any other JWT signed by us is not an access token."""
    refuse(client, sql_spy, forger.token(header=forger.header(typ=typ)))


# -- time claims ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": -6},
        {"exp": -3600},
        {"nbf": 10},
        {"nbf": 3600},
        {"iat": 10},
        {"iat": 3600},
    ],
    ids=["exp-6s-ago", "exp-1h-ago", "nbf-in-10s", "nbf-in-1h", "iat-in-10s", "iat-in-1h"],
)
def test_time_claims_beyond_the_leeway_are_refused(client, forger, sql_spy, changes):
    """5 s of leeway. Past times are exact (the server's clock only moves on); future ones get
    a few seconds of margin, since the server reads its clock a little after we read ours."""
    now = int(time.time())
    claims = forger.claims(**{name: now + delta for name, delta in changes.items()})
    refuse(client, sql_spy, forger.token(claims=claims))


def _future() -> int:
    return int(time.time()) + 300


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(lambda: {"exp": 0}, id="exp-epoch"),
        pytest.param(lambda: {"exp": -1}, id="exp-negative"),
        pytest.param(lambda: {"exp": DROP}, id="exp-missing"),
        pytest.param(lambda: {"iat": DROP}, id="iat-missing"),
        pytest.param(lambda: {"exp": None}, id="exp-null"),
        pytest.param(lambda: {"exp": "tomorrow"}, id="exp-string"),
        pytest.param(lambda: {"exp": str(_future())}, id="exp-numeric-string"),
        pytest.param(lambda: {"exp": True}, id="exp-bool"),
        pytest.param(lambda: {"exp": float("nan")}, id="exp-NaN"),
        pytest.param(lambda: {"exp": float("inf")}, id="exp-Infinity"),
        pytest.param(lambda: {"exp": [_future()]}, id="exp-list"),
        pytest.param(lambda: {"iat": str(int(time.time()))}, id="iat-numeric-string"),
        pytest.param(lambda: {"iat": None}, id="iat-null"),
        pytest.param(lambda: {"nbf": str(int(time.time()))}, id="nbf-numeric-string"),
    ],
)
def test_malformed_time_claims_are_refused(client, forger, sql_spy, changes):
    refuse(client, sql_spy, forger.token(claims=forger.claims(**changes())))


# -- iss and aud --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iss",
    [
        "http://evil.test",
        f"{ISSUER}/",
        ISSUER.replace("http://", "https://"),
        ISSUER.upper(),
        f"{ISSUER}.evil.test",
        "",
        DROP,
        None,
        [ISSUER],
    ],
    ids=["other", "trailing-slash", "https", "upper", "suffix", "empty", "missing", "null", "list"],
)
def test_a_wrong_issuer_is_refused(client, forger, sql_spy, iss):
    refuse(client, sql_spy, forger.token(claims=forger.claims(iss=iss)))


@pytest.mark.parametrize(
    "aud",
    ["http://other-app.test", ["http://other-app.test"], [], "", DROP, None, f"{ISSUER}/", 1],
    ids=["other", "other-list", "empty-list", "empty", "missing", "null", "trailing-slash", "int"],
)
def test_a_wrong_audience_is_refused(client, forger, sql_spy, aud):
    refuse(client, sql_spy, forger.token(claims=forger.claims(aud=aud)))


# -- identity claims with wrong types or values -----------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(lambda user: {"sub": 12345}, id="sub-int"),
        pytest.param(lambda user: {"sub": [user.user_id]}, id="sub-list"),
        pytest.param(lambda user: {"sub": {"id": user.user_id}}, id="sub-object"),
        pytest.param(lambda user: {"sub": None}, id="sub-null"),
        pytest.param(lambda user: {"sub": ""}, id="sub-empty"),
        pytest.param(lambda user: {"sub": DROP}, id="sub-missing"),
        pytest.param(lambda user: {"sub": "x" * 65}, id="sub-too-long"),
        pytest.param(lambda user: {"jti": DROP}, id="jti-missing"),
        pytest.param(lambda user: {"jti": 12345}, id="jti-int"),
        pytest.param(lambda user: {"jti": ""}, id="jti-empty"),
        pytest.param(lambda user: {"jti": "j" * 65}, id="jti-too-long"),
        pytest.param(lambda user: {"client_id": DROP}, id="client_id-missing"),
        pytest.param(lambda user: {"client_id": 1}, id="client_id-int"),
        pytest.param(lambda user: {"client_id": [API_CLIENT_ID]}, id="client_id-list"),
        pytest.param(lambda user: {"scope": ["profile", "email"]}, id="scope-list"),
        pytest.param(lambda user: {"sid": 12345}, id="sid-int"),
        pytest.param(lambda user: {"sid": "s" * 44}, id="sid-too-long"),
    ],
)
def test_identity_claims_of_the_wrong_type_are_refused(client, forger, sql_spy, victim, changes):
    refuse(client, sql_spy, forger.token(claims=forger.claims(**changes(victim))))


def test_a_genuinely_signed_token_for_an_unknown_user_is_refused(client, forger, sql_spy):
    claims = forger.claims(sub="00000000-0000-4000-8000-000000000000")
    refuse(client, sql_spy, forger.token(claims=claims), before_db=False)


def test_a_session_of_another_user_does_not_vouch_for_this_one(
    client, forger, sql_spy, second_user
):
    """sub of one user, sid of another user's live session: both are real, the pair is not."""
    other_sid = payload_of(second_user.token)["sid"]
    claims = forger.claims(sid=other_sid)
    refuse(client, sql_spy, forger.token(claims=claims), before_db=False)
    claims = forger.claims(sub=second_user.user_id)  # the victim's sid, the other's sub
    refuse(client, sql_spy, forger.token(claims=claims), before_db=False)


def test_an_unknown_session_is_refused(client, forger, sql_spy):
    claims = forger.claims(sid=secrets.token_urlsafe(24))
    refuse(client, sql_spy, forger.token(claims=claims), before_db=False)


def test_a_user_token_without_sid_is_not_a_client_token(client, forger, sql_spy):
    """Dropping sid sends the token down the client-token path: the user is no client."""
    claims = forger.claims(sid=DROP)
    refuse(client, sql_spy, forger.token(claims=claims), before_db=False)
    claims = forger.claims(sid=DROP, sub=API_CLIENT_ID)  # the built-in client has no row
    refuse(client, sql_spy, forger.token(claims=claims), before_db=False)


# -- revoked sessions ---------------------------------------------------------------------------


def test_a_token_for_a_revoked_session_is_refused(client, forger, sql_spy, victim):
    logout = client.post(f"{API}/logout/", headers=victim.auth)
    assert logout.status_code == 200, logout.json
    refuse(client, sql_spy, victim.token, before_db=False)
    # A brand-new token (new jti, new iat) naming the ended session is refused as well.
    refuse(client, sql_spy, forger.token(), before_db=False)


def test_a_denylisted_jti_stays_refused_when_re_signed(client, forger, sql_spy):
    token = forger.token()
    jti = payload_of(token)["jti"]
    revoked = client.post("/oauth/revoke", data={"token": token, "client_id": API_CLIENT_ID})
    assert revoked.status_code == 200, revoked.json
    refuse(client, sql_spy, token, before_db=False)
    # The session is alive, so only the jti is to blame: a fresh one is fine, the old one is not.
    assert verify_token(client, forger.token()).status_code == 200
    refuse(client, sql_spy, forger.token(claims=forger.claims(jti=jti)), before_db=False)


def test_a_token_signed_by_a_retired_key_is_refused(make_app, mailbox, tmp_path):
    """Rotation keeps old tokens valid while the key is published; retiring ends them."""
    app = make_app(IDP_KEYS_DIR=str(tmp_path / "keys"))
    client = app.test_client()
    user = logged_in_user(client, mailbox)
    keys = app.extensions["idp.services"].keys
    old_kid, old_key = keys.signing_key()
    forger = Forger(old_kid, old_key, user, payload_of(user.token)["sid"])

    new_kid = keys.rotate()
    assert new_kid != old_kid
    assert verify_token(client, user.token).status_code == 200  # verify-only: still published
    assert verify_token(client, forger.token()).status_code == 200

    keys.retire(old_kid)
    assert_refused(verify_token(client, user.token))
    assert_refused(verify_token(client, forger.token()))


# -- what is not a usable bearer token at all ---------------------------------------------------


def test_a_refresh_token_is_not_a_bearer_token(client, victim, sql_spy):
    refuse(client, sql_spy, victim.refresh_token)


def test_a_client_credentials_token_needs_a_user(app, client, sql_spy):
    from idp.clock import utcnow
    from idp.services.clients import create_client

    with app.app_context():
        created = create_client("resource-server", "read", utcnow())
        transaction.commit()  # the caller owns the commit (a CLI command does)
        client_id, secret = created.client.client_id, created.client_secret
    issued = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    assert issued.status_code == 200, issued.json
    token = issued.json["access_token"]
    assert payload_of(token)["sub"] == client_id
    response = refuse(client, sql_spy, token, before_db=False)
    assert "user" in response.json["message"]


def test_an_oversized_token_is_refused_even_when_genuinely_signed(client, forger, sql_spy):
    token = forger.token(claims=forger.claims(pad="x" * 4200))
    assert len(token) > 4096
    refuse(client, sql_spy, token)


def test_an_oversized_token_is_refused_before_any_parsing(client, forger, sql_spy):
    token = forger.token()
    refuse(client, sql_spy, token + "A" * (4097 - len(token)))


GARBAGE = {
    "word": "garbage",
    "three-dots": "a.b.c",
    "dots-only": "..",
    "four-dots": "....",
    "two-parts": "eyJhbGciOiJSUzI1NiJ9.e30",
    "four-parts": "e30.e30.e30.e30",
    "jwe-five-parts": "e30.e30.e30.e30.e30",
    "empty-objects": "e30.e30.e30",
    "not-base64": "!!!.@@@.###",
    "padded": "e30=.e30=.e30=",
    "header-is-a-list": b64url(b"[]") + ".e30.e30",
    "header-is-a-string": b64url(b'"RS256"') + ".e30.e30",
    "header-not-json": b64url(b"{alg:RS256}") + ".e30.e30",
    "header-not-utf8": b64url(b"\xff\xfe\xfd") + ".e30.e30",
    "header-huge-number": b64url(b"1" * 2000) + ".e30.e30",
    "header-deeply-nested-list": b64url(b"[" * 2500) + ".e30.e30",
    "header-deeply-nested-object": b64url(b'{"a":' + b"[" * 2500) + ".e30.e30",
    "base64-std-alphabet": "ey+/.ey+/.ey+/",
    "jwt-lookalike": "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_is_refused_not_crashed_on(client, sql_spy, name):
    refuse(client, sql_spy, GARBAGE[name])


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer {token} {token}",
        "Bearer {token} extra",
        "Bearer {token},{token}",
        "Bearer",
        "Bearer ",
        "Basic {basic}",
        "Token {token}",
        "JWT {token}",
        "{token}",
        "Bearer: {token}",
        "BearerX {token}",
    ],
    ids=[
        "two-tokens",
        "token-and-word",
        "comma-joined",
        "scheme-only",
        "scheme-and-space",
        "basic",
        "token-scheme",
        "jwt-scheme",
        "no-scheme",
        "colon",
        "scheme-prefix",
    ],
)
def test_a_malformed_authorization_header_is_refused(client, forger, sql_spy, authorization):
    """Even though each of these carries a perfectly valid token."""
    token = forger.token()
    basic = base64.b64encode(f"{forger.victim.email}:{forger.victim.password}".encode()).decode()
    header = authorization.format(token=token, basic=basic)
    sql_spy.clear()
    response = client.get(VERIFY, headers={"Authorization": header})
    assert_refused(response)
    assert not sql_spy.saw(payload_of(token)["jti"])


def test_no_authorization_header_is_a_missing_token(client, forger, sql_spy):
    token = forger.token()
    # A token in the query string or an unrelated header is not a bearer credential here.
    for request in (
        {"query_string": {"access_token": token}},
        {"headers": {"X-Access-Token": token}},
        {"headers": {"Cookie": f"access_token={token}"}},
    ):
        response = client.get(VERIFY, **request)
        assert_refused(response, code="missing_token")
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert not sql_spy.saw(payload_of(token)["jti"])
