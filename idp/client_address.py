"""Client addresses as the per-address limits count them: one key per client, however spelled.

The address is the one left after the trusted-proxy rule (Werkzeug's ProxyFix), which takes
`X-Forwarded-For` as the proxy wrote it: some proxies add a port ("203.0.113.5:40000",
"[2001:db8::1]:443"), which would otherwise make every connection a new client.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "unknown"
# IPv6 prefixes that carry an IPv4 client's address in their last 32 bits: the SIIT
# "IPv4-translated" range and the NAT64 well-known prefix (RFC 6052). A client reaching us
# through a translator is that IPv4 client, not one of a single shared /64.
_EMBEDDED_IPV4 = (
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
    ipaddress.IPv6Network("64:ff9b::/96"),
)
# Under attack, IPv6 sources are also counted per site: a /48 is what one site is usually
# given, and it holds 65,536 /64s.
SITE_PREFIX = 48


def parse(address: str | None) -> IPAddress | None:
    """The address without brackets, port or zone; IPv4 behind any IPv6 wrapping; None if none."""
    if not address:
        return None
    text = address.strip()
    if text.startswith("["):  # [v6] or [v6]:port
        end = text.find("]")
        text = text[1:end] if end > 0 else ""
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    text = text.split("%", 1)[0]  # a zone id (fe80::1%eth0) names no other client
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        return _embedded_ipv4(ip) or ip
    return ip


def source_of(address: str | None, ipv6_prefix: int) -> str:
    """The key a client is counted under: an IPv4 address whole, IPv6 by its network.

    A host is commonly given a whole IPv6 /64 and can pick any address in it, so per-/128
    counters would give it an unlimited supply. Anything unparseable shares one key.
    """
    ip = parse(address)
    if ip is None:
        return UNKNOWN
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    return _network(ip, ipv6_prefix)


def site_of(address: str | None) -> str | None:
    """The IPv6 site (/48) a client is in; None for IPv4, which has no such wider unit."""
    ip = parse(address)
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    return _network(ip, SITE_PREFIX)


def _network(ip: ipaddress.IPv6Address, prefix: int) -> str:
    """The /prefix network holding ip, written as IPv6Network writes it (a third of its cost:
    this runs for every rate-limited request)."""
    host_bits = 128 - prefix
    return f"{ipaddress.IPv6Address(int(ip) >> host_bits << host_bits)}/{prefix}"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:  # 2002::/16 (6to4)
        return ip.sixtofour
    if ip.teredo is not None:  # 2001::/32: (server, client)
        return ip.teredo[1]
    for network in _EMBEDDED_IPV4:
        if ip in network:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None
