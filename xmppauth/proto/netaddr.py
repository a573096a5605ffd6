"""The client address a per-address limit counts by (guessing limits, connection limits).

An IPv4 address is itself (an IPv4-mapped IPv6 address is its IPv4 address); an IPv6 address counts
by its /64 prefix, since one subscriber is normally given a whole /64 and can use any address in it.
Anything that is no IP address (a Unix socket, a test's name) is taken as it is.
"""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=4096)  # per login and per connection: the same few addresses again and again
def address_key(address: str) -> str:
    """The key of ``address`` for per-address limits."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
