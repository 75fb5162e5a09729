"""AccessTokenService: minting, decoding (signature and claims) and verifying standing.

Forged and malformed tokens are covered end to end in tests/api/test_forged_tokens.py; these
call the service with a set clock.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from joserfc import jws, jwt

from idp import transaction
from idp.errors import InvalidAccessToken
from idp.services.access_tokens import TOKEN_TYPE, AccessTokenService
from idp.services.clients import create_client, delete_client
from idp.services.keys import ALGORITHM
from idp.services.registry import get_services
from idp.services.sessions import API_SCOPE
from tests.conftest import ISSUER
from tests.flows import API_CLIENT_ID
from tests.unit.service_support import NOW, add_user


def signed(claims: dict, **header: str) -> str:
    """Sign claims with the app's real signing key, as issue() would."""
    kid, key = get_services().keys.signing_key()
    header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": kid, **header}
    return jwt.encode(header, claims, key, algorithms=[ALGORITHM])


def test_issue_and_decode_round_trip(app):
    with app.app_context():
        service = get_services().access_tokens
        issued = service.issue(
            subject="sub-1", client_id="client-1", scope="a b", now=NOW, session_id="sid-1"
        )
        claims = service.decode(issued.token, NOW)
        header = jws.extract_compact(issued.token.encode()).headers()
        kid, _key = get_services().keys.signing_key()
    assert claims == issued.claims
    iat = int(NOW.timestamp())
    assert claims["iss"] == claims["aud"] == ISSUER
    assert (claims["iat"], claims["exp"], issued.expires_in) == (iat, iat + 3600, 3600)
    assert (claims["sub"], claims["client_id"], claims["scope"], claims["sid"]) == (
        "sub-1",
        "client-1",
        "a b",
        "sid-1",
    )
    assert header == {"alg": "RS256", "typ": "at+jwt", "kid": kid}


def test_every_token_gets_its_own_jti_and_a_client_token_no_sid(app):
    with app.app_context():
        service = get_services().access_tokens
        first, second = (service.issue_to_client("c", "s", NOW) for _ in range(2))
    assert first.claims["jti"] != second.claims["jti"]
    assert "sid" not in first.claims
    assert first.claims["sub"] == first.claims["client_id"] == "c"


@pytest.mark.parametrize(
    ("seconds_after_issue", "accepted"),
    [
        (0, True),
        (3600 + 4, True),  # just before exp plus the leeway
        (3600 + 5, False),  # at exp plus the leeway: "on or after" exp is refused
        (-5, True),  # iat a little ahead of our clock
        (-6, False),  # issued in the future
    ],
)
def test_decode_checks_time_with_the_leeway_only(app, seconds_after_issue, accepted):
    with app.app_context():
        service = get_services().access_tokens
        token = service.issue(subject="s", client_id="c", scope="", now=NOW).token
        when = NOW + timedelta(seconds=seconds_after_issue)
        if accepted:
            assert service.decode(token, when)["sub"] == "s"
        else:
            with pytest.raises(InvalidAccessToken):
                service.decode(token, when)


@pytest.mark.parametrize(
    ("issuer", "audience"),
    [(ISSUER, "https://another-app.example"), ("https://another-idp.example", ISSUER)],
)
def test_a_token_for_another_audience_or_from_another_issuer_is_refused(app, issuer, audience):
    with app.app_context():
        ours = get_services().access_tokens
        # Same keys, same everything but the one claim.
        theirs = AccessTokenService(ours.keys, issuer, audience, 3600, 5, ours.revocations)
        token = theirs.issue(subject="s", client_id="c", scope="", now=NOW).token
        with pytest.raises(InvalidAccessToken):
            ours.decode(token, NOW)


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": 1.5e10},  # a float
        {"iat": True},  # a bool is an int to Python, not to us
        {"sub": ""},
        {"sub": "x" * 65},
        {"jti": 7},
        {"client_id": None},
        {"scope": ["a"]},
        {"sid": "s" * 44},
    ],
)
def test_claims_of_the_wrong_type_or_size_are_refused_despite_a_good_signature(app, changes):
    with app.app_context():
        service = get_services().access_tokens
        claims = service.issue(subject="s", client_id="c", scope="a", now=NOW).claims
        assert service.decode(signed(claims), NOW)  # the unchanged claims pass
        with pytest.raises(InvalidAccessToken):
            service.decode(signed({**claims, **changes}), NOW)


@pytest.mark.parametrize("token", ["", "a.b.c", "x" * 4097, None, 42, "é.é.é"])
def test_garbage_is_an_invalid_token_not_a_crash(app, token):
    with app.app_context(), pytest.raises(InvalidAccessToken):
        get_services().access_tokens.decode(token, NOW)


def test_issue_to_client_records_token_issued_and_verifies_while_the_client_lives(
    app, audit_output
):
    with app.app_context():
        service = get_services().access_tokens
        client_id = create_client("reports", "read", NOW).client.client_id
        transaction.commit()  # the caller owns the commit (a CLI command does)
        issued = service.issue_to_client(client_id, "read", NOW)
        access = service.verify(issued.token, NOW)
        assert (access.user, access.scopes) == (None, {"read"})
        delete_client(client_id, NOW, get_services().sessions)
        transaction.commit()
        with pytest.raises(InvalidAccessToken):
            service.verify(issued.token, NOW)
    lines = [json.loads(line) for line in audit_output.getvalue().splitlines()]
    (event,) = [line for line in lines if line["event"] == "token.issued"]
    assert (event["client_id"], event["scope"], event["jti"]) == (
        client_id,
        "read",
        issued.claims["jti"],
    )


def test_a_client_token_for_an_unknown_client_is_refused(app):
    with app.app_context():
        service = get_services().access_tokens
        token = service.issue_to_client("no-such-client", "read", NOW).token
        with pytest.raises(InvalidAccessToken):
            service.verify(token, NOW)


@pytest.mark.parametrize("standing", ["inactive", "reset_after_issue", "denylisted"])
def test_a_user_token_is_refused_once_the_account_no_longer_stands(app, standing):
    with app.app_context():
        services = get_services()
        pair = services.sessions.start(add_user(), API_CLIENT_ID, API_SCOPE, NOW)
        transaction.commit()
        assert services.access_tokens.verify(pair.access_token, NOW).user.is_active
        if standing == "inactive":
            pair.user.is_active = False
        elif standing == "reset_after_issue":
            pair.user.sessions_valid_after = NOW + timedelta(seconds=1)
        else:
            services.sessions.deny_access_token(
                services.access_tokens.decode(pair.access_token, NOW), NOW
            )
        transaction.commit()
        with pytest.raises(InvalidAccessToken):
            services.access_tokens.verify(pair.access_token, NOW + timedelta(seconds=2))
