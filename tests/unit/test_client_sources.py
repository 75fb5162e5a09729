"""The key a client address is counted under by every per-address limit and throttle."""

import pytest

from idp.rate_limits import source_of


@pytest.mark.parametrize(
    ("address", "prefix", "key"),
    [
        ("198.51.100.7", 64, "198.51.100.7"),  # IPv4: the whole address
        ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"),  # same /64, same key
        ("2001:DB8:1:2::1", 64, "2001:db8:1:2::/64"),  # spelling does not matter
        ("2001:db8:1:2:3:4:5:6", 56, "2001:db8:1::/56"),
        ("2001:db8::1", 128, "2001:db8::1/128"),
        ("::ffff:198.51.100.7", 64, "198.51.100.7"),  # IPv4-mapped: the IPv4 address
        ("fe80::1%eth0", 64, "fe80::/64"),  # a zone id does not make another client
        ("not-an-address:", 64, "not-an-address:"),
        (None, 64, "unknown"),
        ("", 64, "unknown"),
    ],
)
def test_ipv4_counts_whole_and_ipv6_by_network(address, prefix, key):
    assert source_of(address, prefix) == key


def test_two_networks_are_two_clients():
    assert source_of("2001:db8:1:2::1", 64) != source_of("2001:db8:1:3::1", 64)
