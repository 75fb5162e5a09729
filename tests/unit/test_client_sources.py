"""The key a client address is counted under by every per-address limit and throttle."""

import pytest

from idp.client_address import site_of, source_of


@pytest.mark.parametrize(
    ("address", "prefix", "key"),
    [
        ("198.51.100.7", 64, "198.51.100.7"),  # IPv4: the whole address
        ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"),  # same /64, same key
        ("2001:DB8:1:2::1", 64, "2001:db8:1:2::/64"),  # spelling does not matter
        ("2001:db8:1:2:3:4:5:6", 56, "2001:db8:1::/56"),
        ("2001:db8::1", 128, "2001:db8::1/128"),
        ("fe80::1%eth0", 64, "fe80::/64"),  # a zone id does not make another client
        # Ports and brackets, as some proxies write X-Forwarded-For: not another client each.
        ("198.51.100.7:40000", 64, "198.51.100.7"),
        ("[2001:db8:1:2::1]:443", 64, "2001:db8:1:2::/64"),
        ("[2001:db8:1:2::1]", 64, "2001:db8:1:2::/64"),
        (" 198.51.100.7 ", 64, "198.51.100.7"),
        # IPv4 clients wrapped in IPv6 count as that IPv4 client, not as one shared /64.
        ("::ffff:198.51.100.7", 64, "198.51.100.7"),  # IPv4-mapped
        ("::ffff:0:198.51.100.7", 64, "198.51.100.7"),  # SIIT IPv4-translated
        ("64:ff9b::198.51.100.7", 64, "198.51.100.7"),  # NAT64 well-known prefix
        ("2002:c633:6407::1", 64, "198.51.100.7"),  # 6to4
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", 64, "192.0.2.45"),  # Teredo (its example)
        # Anything else shares one key: garbage buys no fresh budget.
        ("not-an-address", 64, "unknown"),
        ("1.2.3.4.5", 64, "unknown"),
        ("[2001:db8::1", 64, "unknown"),
        (None, 64, "unknown"),
        ("", 64, "unknown"),
    ],
)
def test_one_key_per_client_however_its_address_is_written(address, prefix, key):
    assert source_of(address, prefix) == key


def test_two_networks_are_two_clients():
    assert source_of("2001:db8:1:2::1", 64) != source_of("2001:db8:1:3::1", 64)


@pytest.mark.parametrize(
    ("address", "site"),
    [
        ("2001:db8:1:2::1", "2001:db8:1::/48"),
        ("[2001:db8:1:ffff::9]:443", "2001:db8:1::/48"),
        ("198.51.100.7", None),
        ("::ffff:198.51.100.7", None),  # an IPv4 client, whatever the wrapping
        ("garbage", None),
    ],
)
def test_an_ipv6_client_belongs_to_its_48_site(address, site):
    assert site_of(address) == site
