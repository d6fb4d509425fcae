"""SSRF guard for media the router fetches from client-given URLs.

Only http(s) to public addresses: loopback, private, link-local (169.254.169.254, the cloud metadata
service), carrier-grade NAT, multicast and reserved ranges are refused unless explicitly allowed
(``TARASH_ROUTER_ALLOW_PRIVATE_MEDIA_URLS=true``, for tests and closed networks). The check runs on the
addresses DNS actually returned, inside the connector, so a name that resolves to 127.0.0.1 (or rebinds to
it between a check and the connect) is refused too.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

ALLOW_PRIVATE_ENV = "TARASH_ROUTER_ALLOW_PRIVATE_MEDIA_URLS"


class BlockedURLError(ValueError):
    """The URL is not an http(s) URL to a public address."""


def private_allowed() -> bool:
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


#: IPv6 prefixes whose low 32 bits are an IPv4 address a gateway may translate to: NAT64 (RFC 6052, and the
#: local-use 64:ff9b:1::/48 of RFC 8215), IPv4-compatible (deprecated ::a.b.c.d) and SIIT's IPv4-translated.
_EMBEDDING_LOW_32 = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96",
                                                              "::ffff:0:0:0/96"))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo server and client, NAT64...)."""
    found = [a for a in (ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())) if a is not None]
    low = int(ip) & 0xFFFFFFFF
    if low > 1 and any(ip in net for net in _EMBEDDING_LOW_32):  # (:: and ::1 are themselves, not IPv4)
        found.append(ipaddress.IPv4Address(low))
    return found


def is_public(address: str) -> bool:
    """Whether ``address`` (and every IPv4 address an IPv6 form of it embeds) is a public unicast address."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = embedded_ipv4(ip)
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is that IPv4 address, judged alone
            return is_public(str(ip.ipv4_mapped))
        if any(not is_public(str(v4)) for v4 in embedded):
            return False
        if embedded:  # a translation prefix to a public IPv4 address: judged by what it reaches
            return True
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, allow_private: bool | None = None) -> None:
    """Refuse non-http(s) URLs and literal non-public IPs (names are checked at resolve time)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BlockedURLError(f"only http(s) URLs can be fetched, got {parts.scheme or 'no'} scheme")
    if allow_private if allow_private is not None else private_allowed():
        return
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return
    if not is_public(str(literal)):
        raise BlockedURLError(f"refusing to fetch from non-public address {parts.hostname}")


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then drops every non-public address."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        public = [r for r in results if is_public(r["host"])]
        if not public:
            raise OSError(f"{host} resolves only to non-public addresses")
        return public

    async def close(self) -> None:
        await self._inner.close()


def connector_kwargs(allow_private: bool | None = None) -> dict[str, Any]:
    """Extra ``TCPConnector`` arguments for a session that fetches client-given URLs."""
    if allow_private if allow_private is not None else private_allowed():
        return {}
    return {"resolver": PublicOnlyResolver()}
