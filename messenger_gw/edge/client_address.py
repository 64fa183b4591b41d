"""The client's IP address, believing ``X-Forwarded-For`` only from trusted proxy hops.

Walking ``X-Forwarded-For`` from the right, every address that belongs to a
trusted network is a proxy hop; the first one that does not is the client.
With no trusted proxies configured the peer address is the client, whatever
the headers say.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from aiohttp import web

from messenger_gw.settings import Network

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_ip(request: web.Request, trusted: Sequence[Network]) -> str:
    peer = _address(request.remote)
    if peer is None:
        return request.remote or "unknown"
    if not _is_trusted(peer, trusted):
        return str(peer)
    hops = [h.strip() for header in request.headers.getall("X-Forwarded-For", []) for h in header.split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # a garbled hop: trust nothing beyond it
        if not _is_trusted(address, trusted):
            return str(address)
        peer = address
    return str(peer)


def forwarded_for(request: web.Request, trusted: Sequence[Network]) -> str:
    """``X-Forwarded-For`` for the next hop: the chain so far if the peer is trusted, plus the peer."""
    peer = request.remote or "unknown"
    address = _address(request.remote)
    chain = ", ".join(request.headers.getall("X-Forwarded-For", []))
    if chain and address is not None and _is_trusted(address, trusted):
        return f"{chain}, {peer}"
    return peer


@functools.lru_cache(maxsize=4096)
def _address(text: str | None) -> IPAddress | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def within(address: str, networks: Sequence[Network]) -> bool:
    """Whether the address written as ``address`` is in one of ``networks``; an unreadable one is in none."""
    parsed = _address(address)
    return parsed is not None and _is_trusted(parsed, networks)


def _is_trusted(address: IPAddress, trusted: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)
