import logging
import uuid

import pytest

from tests.flows import API, PASSWORD, register_and_verify, settle, unique_email
from tests.support import free_port

LIMITED = {"IDP_RATELIMIT_ENABLED": True}
AUTH_ENDPOINTS = [
    ("register/", {"email": "x@example.com", "password": "Weak"}),
    ("login/", {"email": "x@example.com", "password": "Wrong-Pass-1"}),
    ("verify-email/", {"token": "A" * 43}),
    ("resend-verification/", {"email": "x@example.com"}),
    ("password-reset/", {"email": "x@example.com"}),
    ("password-reset-confirm/", {"token": "A" * 43, "new_password": "Brand-New-Secret-9"}),
]


WRONG = "Wrong-Pass-1"


def login_from(client, source, email, password=WRONG):
    """A login from `source`, as the trusted proxy in front of idp says (X-Forwarded-For)."""
    body = {"email": email, "password": password}
    return client.post(f"{API}/login/", json=body, headers={"X-Forwarded-For": source})


def assert_rate_limited(response, window=60):
    assert response.status_code == 429
    assert response.json == {
        "success": False,
        "message": "Too many requests. Try again later.",
        "code": "rate_limited",
    }
    assert 1 <= int(response.headers["Retry-After"]) <= window


@pytest.mark.parametrize(("path", "body"), AUTH_ENDPOINTS)
def test_auth_endpoints_allow_five_requests_a_minute_per_address(make_app, path, body):
    client = make_app(**LIMITED).test_client()
    for _ in range(5):
        assert client.post(f"{API}/{path}", json=body).status_code != 429
    assert_rate_limited(client.post(f"{API}/{path}", json=body))


def test_one_budget_whatever_the_spelling(make_app):
    client = make_app(**LIMITED).test_client()
    body = {"email": "x@example.com", "password": "Wrong-Pass-1"}
    spellings = [
        f"{API}/login/",
        f"{API}/login",
        "/api/v1/auth//login/",
        "/API/V1/AUTH/LOGIN/",
        f"{API}/login/?cache=bust",
    ]
    assert [client.post(path, json=body).status_code for path in spellings] == [401] * 5
    assert_rate_limited(client.post(f"{API}/Login", json=body))


def test_a_spoofed_forwarded_for_buys_no_fresh_budget(make_app):
    client = make_app(**LIMITED).test_client()
    body = {"email": "x@example.com", "password": "Wrong-Pass-1"}
    for n in range(5):
        headers = {"X-Forwarded-For": f"198.51.100.{n}"}
        client.post(f"{API}/login/", json=body, headers=headers)
    spoofed = client.post(f"{API}/login/", json=body, headers={"X-Forwarded-For": "203.0.113.7"})
    assert_rate_limited(spoofed)


def test_behind_a_trusted_proxy_each_client_has_its_own_budget(make_app):
    client = make_app(IDP_TRUSTED_PROXIES=1, **LIMITED).test_client()
    body = {"email": "x@example.com", "password": "Wrong-Pass-1"}
    first = {"X-Forwarded-For": "198.51.100.1"}
    for _ in range(5):
        client.post(f"{API}/login/", json=body, headers=first)
    assert_rate_limited(client.post(f"{API}/login/", json=body, headers=first))
    other = client.post(f"{API}/login/", json=body, headers={"X-Forwarded-For": "198.51.100.2"})
    assert other.status_code == 401


def test_session_and_oauth_limits_are_configurable(make_app, mailbox):
    client = make_app(
        IDP_RATELIMIT_SESSION="2 per minute", IDP_RATELIMIT_OAUTH="2 per minute", **LIMITED
    ).test_client()
    for _ in range(2):
        assert (
            client.post(f"{API}/token/refresh/", json={"refresh_token": "A" * 43}).status_code
            == 401
        )
    assert_rate_limited(client.post(f"{API}/token/refresh/", json={"refresh_token": "A" * 43}))
    for _ in range(2):
        assert (
            client.post("/oauth/token", data={"grant_type": "client_credentials"}).status_code
            != 429
        )
    oauth = client.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert oauth.status_code == 429 and "Retry-After" in oauth.headers


def test_an_account_under_attack_answers_strangers_429_and_still_lets_its_owner_in(
    make_app, mailbox
):
    # Many addresses (a trusted proxy says so), one account: credential stuffing.
    client = make_app(
        IDP_TRUSTED_PROXIES=1, IDP_LOGIN_FAILURES_PER_ACCOUNT="3 per 15 minutes", **LIMITED
    ).test_client()
    email = unique_email()
    register_and_verify(client, mailbox, email)
    stranger = unique_email()

    def attempt(n, address, password):
        return login_from(client, f"198.51.{n // 250}.{n % 250}", address, password)

    for n in range(3):
        assert attempt(n, email.upper(), "Wrong-Pass-1").status_code == 401
        assert attempt(100 + n, stranger, "Wrong-Pass-1").status_code == 401
    # The wall is full: every further failure answers 429, for a real and an unknown account.
    attacker = attempt(10, email, "Wrong-Pass-2")
    unknown = attempt(110, stranger, "Wrong-Pass-2")
    assert_rate_limited(attacker, window=15 * 60)
    assert_rate_limited(unknown, window=15 * 60)
    assert attacker.json == unknown.json
    # Each attacking source now pays five failures a guess: its second is its last (10 per
    # 15 minutes), and after it the source is refused before its password is even checked.
    assert_rate_limited(attempt(10, email, "Wrong-Pass-3"), window=15 * 60)
    assert_rate_limited(attempt(10, email, PASSWORD), window=15 * 60)
    # The owner, from an address of their own, signs in through the full wall.
    assert attempt(20, email, PASSWORD).status_code == 200
    # Other accounts are not affected.
    other = unique_email()
    register_and_verify(client, mailbox, other)
    assert attempt(21, other, "Wrong-Pass-1").status_code == 401
    assert attempt(22, other, PASSWORD).status_code == 200


def test_the_owner_signs_in_while_strangers_hammer_the_account(make_app, mailbox):
    client = make_app(
        IDP_TRUSTED_PROXIES=1, IDP_LOGIN_FAILURES_PER_ACCOUNT="5 per hour", **LIMITED
    ).test_client()
    email = unique_email()
    register_and_verify(client, mailbox, email)
    statuses = []
    for n in range(30):  # thirty strangers, one guess each, interleaved with the owner
        statuses.append(login_from(client, f"203.0.113.{n}", email).status_code)
        if n % 10 == 9:
            mine = login_from(client, "198.51.100.77", email, PASSWORD)
            assert mine.status_code == 200, mine.json
    assert statuses == [401] * 5 + [429] * 25


def test_one_ipv6_network_is_one_client_for_route_limits(make_app):
    client = make_app(IDP_TRUSTED_PROXIES=1, **LIMITED).test_client()
    for n in range(5):  # five addresses of one /64
        assert login_from(client, f"2001:db8:1:2::{n + 1:x}", "x@example.com").status_code == 401
    assert_rate_limited(login_from(client, "2001:db8:1:2:ffff:ffff:ffff:fffe", "x@example.com"))
    assert login_from(client, "2001:db8:1:3::1", "x@example.com").status_code == 401


def test_the_ipv6_prefix_length_is_a_setting(make_app):
    client = make_app(IDP_TRUSTED_PROXIES=1, IDP_IPV6_PREFIX_LENGTH=128, **LIMITED).test_client()
    for _ in range(5):
        assert login_from(client, "2001:db8::1", "x@example.com").status_code == 401
    # Another /128: its own budget.
    assert login_from(client, "2001:db8::2", "x@example.com").status_code == 401


def test_failed_logins_from_one_ipv6_network_share_one_source_budget(make_app, mailbox):
    client = make_app(
        IDP_TRUSTED_PROXIES=1, IDP_LOGIN_FAILURES_PER_SOURCE="3 per 15 minutes", **LIMITED
    ).test_client()
    email = unique_email()
    register_and_verify(client, mailbox, email)
    for n in range(3):  # three addresses of one /64, one guess each (under the route limit)
        assert login_from(client, f"2001:db8:aa:bb::{n + 1:x}", email).status_code == 401
    refused = login_from(client, "2001:db8:aa:bb::99", email, PASSWORD)  # the same /64
    assert_rate_limited(refused, window=15 * 60)
    assert login_from(client, "2001:db8:aa:cc::1", email, PASSWORD).status_code == 200


def test_one_address_guessing_one_account_is_stopped_without_locking_the_owner_out(
    make_app, mailbox
):
    # The tight wall is per account and client address; the one per account alone is loose
    # (NIST SP 800-63B allows up to 100), so a stranger cannot cheaply lock the owner out.
    client = make_app(
        IDP_TRUSTED_PROXIES=1, IDP_LOGIN_FAILURES_PER_SOURCE="3 per 15 minutes", **LIMITED
    ).test_client()
    email = unique_email()
    register_and_verify(client, mailbox, email)
    stranger = unique_email()

    def attempt(address, password, source):
        return login_from(client, source, address, password)

    # (Each address stays under the per-address route limit of 5 per minute.)
    for _ in range(3):
        assert attempt(email, "Wrong-Pass-1", "203.0.113.7").status_code == 401
        assert attempt(stranger, "Wrong-Pass-1", "203.0.113.8").status_code == 401
    locked = attempt(email, PASSWORD, "203.0.113.7")
    unknown = attempt(stranger, PASSWORD, "203.0.113.8")
    assert_rate_limited(locked, window=15 * 60)
    assert locked.json == unknown.json and unknown.status_code == 429
    # The owner, from their own address, is not locked out.
    assert attempt(email, PASSWORD, "198.51.100.20").status_code == 200


def test_successful_logins_are_not_counted_as_failures(make_app, mailbox):
    client = make_app(
        IDP_TRUSTED_PROXIES=1, IDP_LOGIN_FAILURES_PER_ACCOUNT="2 per 15 minutes", **LIMITED
    ).test_client()
    email = unique_email()
    register_and_verify(client, mailbox, email)
    for n in range(4):
        headers = {"X-Forwarded-For": f"198.51.100.{n}"}
        body = {"email": email, "password": PASSWORD}
        assert client.post(f"{API}/login/", json=body, headers=headers).status_code == 200


def test_mails_to_one_address_are_capped_silently(make_app, mailbox):
    client = make_app(
        IDP_TRUSTED_PROXIES=1, IDP_MAILS_PER_ADDRESS="2 per hour", **LIMITED
    ).test_client()
    email = unique_email()
    register_and_verify(client, mailbox, email)  # a verification mail: another kind's budget
    answers = []
    for n in range(4):
        headers = {"X-Forwarded-For": f"198.51.100.{n}"}
        response = client.post(f"{API}/password-reset/", json={"email": email}, headers=headers)
        answers.append((response.status_code, response.json))
        settle(client)  # one at a time: a newer mail sent first would supersede an older one
    assert len({str(answer) for answer in answers}) == 1 and answers[0][0] == 200
    assert [m.subject for m in mailbox.to(email)] == [
        "Confirm your email address",
        "Reset your password",
        "Reset your password",
    ]


def test_limits_can_be_turned_off_and_say_so(make_app, caplog):
    caplog.set_level(logging.WARNING, logger="idp")
    client = make_app(IDP_RATELIMIT_ENABLED=False).test_client()
    assert "rate limiting is DISABLED" in caplog.text
    body = {"email": "x@example.com", "password": "Wrong-Pass-1"}
    statuses = {client.post(f"{API}/login/", json=body).status_code for _ in range(12)}
    assert statuses == {401}


def test_with_redis_down_limits_still_hold_per_process(make_app):
    client = make_app(IDP_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", **LIMITED).test_client()
    body = {"email": "x@example.com", "password": "Wrong-Pass-1"}
    statuses = [client.post(f"{API}/login/", json=body).status_code for _ in range(7)]
    assert 500 not in statuses
    assert statuses[:5] == [401] * 5
    assert statuses[-1] == 429


@pytest.mark.redis
def test_counters_in_redis_are_shared_by_every_instance(make_app):
    # Unique per run: Redis outlives a run, and a reused prefix would inherit its counters.
    shared = {"IDP_RATELIMIT_PREFIX": f"shared-{uuid.uuid4().hex}", **LIMITED}
    first, second = make_app(**shared).test_client(), make_app(**shared).test_client()
    body = {"email": "x@example.com", "password": "Wrong-Pass-1"}
    for client in (first, second, first, second, first):
        assert client.post(f"{API}/login/", json=body).status_code == 401
    assert_rate_limited(second.post(f"{API}/login/", json=body))


def test_retry_after_is_only_on_the_429(make_app):
    client = make_app(**LIMITED).test_client()
    body = {"email": "x@example.com", "password": "Wrong-Pass-1"}
    answers = [client.post(f"{API}/login/", json=body) for _ in range(6)]
    assert [a.status_code for a in answers] == [401] * 5 + [429]
    assert all("Retry-After" not in a.headers for a in answers[:5])
    assert answers[0].headers["X-RateLimit-Limit"] == "5"
    assert int(answers[-1].headers["Retry-After"]) >= 1


def test_under_attack_one_ipv6_site_shares_one_budget_and_the_owner_elsewhere_signs_in(
    make_app, mailbox
):
    client = make_app(
        IDP_TRUSTED_PROXIES=1, IDP_LOGIN_FAILURES_PER_ACCOUNT="2 per hour", **LIMITED
    ).test_client()
    email = unique_email()
    register_and_verify(client, mailbox, email)

    def attempt(source, password=WRONG):
        return login_from(client, source, email, password)

    for n in range(2):  # fill the account's wall
        assert attempt(f"198.51.100.{n}").status_code == 401
    # One site (a /48) walks through its /64s: two guesses in all, then refused unchecked.
    answers = [attempt(f"2001:db8:5:{n:x}::1").status_code for n in range(6)]
    assert answers == [429] * 6
    assert_rate_limited(attempt("2001:db8:5:99::1", PASSWORD), window=15 * 60)
    # The owner, in another site, signs in; so does an IPv4 owner.
    assert attempt("2001:db8:6::1", PASSWORD).status_code == 200
    assert attempt("203.0.113.50", PASSWORD).status_code == 200


def test_a_port_in_forwarded_for_buys_no_fresh_budget(make_app):
    client = make_app(IDP_TRUSTED_PROXIES=1, **LIMITED).test_client()
    for port in range(40000, 40005):
        assert login_from(client, f"203.0.113.5:{port}", "x@example.com").status_code == 401
    for spelling in ("203.0.113.5:41000", "203.0.113.5", "[::ffff:203.0.113.5]:443"):
        assert_rate_limited(login_from(client, spelling, "x@example.com"))


def test_in_privacy_mode_a_full_wall_does_not_tell_a_taken_address_from_a_new_one(
    make_app, mailbox
):
    # The attacker registers two addresses with its password: one was free (so the password
    # is right, the account unverified), one was taken (wrong password). With the account
    # walls full, both logins must answer alike.
    client = make_app(
        IDP_TRUSTED_PROXIES=1,
        IDP_REGISTRATION_PRIVACY=True,
        IDP_LOGIN_FAILURES_PER_ACCOUNT="2 per hour",
        **LIMITED,
    ).test_client()
    taken = unique_email("taken")
    register_and_verify(client, mailbox, taken)
    fresh = unique_email("fresh")
    answers = {}
    for n, address in enumerate((taken, fresh)):
        headers = {"X-Forwarded-For": f"192.0.2.{n}"}
        body = {
            "email": address,
            "password": "Attackers-Own-1",
            "first_name": "A",
            "last_name": "B",
        }
        assert client.post(f"{API}/register/", json=body, headers=headers).status_code == 201
        for m in range(2):
            assert login_from(client, f"198.51.{n}.{m}", address).status_code == 401
        answers[address] = login_from(client, f"203.0.113.{n}", address, "Attackers-Own-1")
    assert answers[taken].status_code == answers[fresh].status_code == 429
    assert answers[taken].json == answers[fresh].json


def test_an_exempt_network_skips_the_route_limits_but_not_the_account_wall(make_app, mailbox):
    # A backend that signs users in on their behalf from one address (IDP_RATELIMIT_EXEMPT_
    # NETWORKS): the per-address limit does not stop it, the per-account wall still does.
    app = make_app(
        IDP_TRUSTED_PROXIES=1,
        IDP_RATELIMIT_AUTH="3 per minute",
        IDP_LOGIN_FAILURES_PER_ACCOUNT="4 per 15 minutes",
        IDP_RATELIMIT_EXEMPT_NETWORKS="10.1.0.0/16, 2001:db8::/32",
        **LIMITED,
    )
    client = app.test_client()
    emails = [unique_email("exempt") for _ in range(4)]
    for email in emails[:3]:
        register_and_verify(client, mailbox, email)  # from 127.0.0.1: not exempt, yet within 3
    signed_in = [emails[0], emails[1], emails[2], emails[0], emails[1]]
    answers = [login_from(client, "10.1.7.9", email, PASSWORD).status_code for email in signed_in]
    assert answers == [200] * 5
    # Outside the networks the route limit holds.
    outside = [login_from(client, "10.2.0.1", emails[0], PASSWORD).status_code for _ in range(4)]
    assert outside == [200, 200, 200, 429]
    # The account wall counts failures from the exempt source too.
    failures = [login_from(client, "2001:db8::5", emails[3]).status_code for _ in range(5)]
    assert failures[-1] == 429, failures


@pytest.mark.parametrize("value", ["0.0.0.0/0", "::/0", "10.0.0.0/33", "not-a-network"])
def test_a_catch_all_or_malformed_exempt_network_is_refused(make_app, value):
    from idp.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="IDP_RATELIMIT_EXEMPT_NETWORKS"):
        make_app(IDP_RATELIMIT_EXEMPT_NETWORKS=value)
