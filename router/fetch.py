"""The one way the router fetches a URL it did not configure itself: client input media, a vendor's result media
(``b64_json``, ``/content``, local copies, ``generate --out``), and the few operator-configured endpoints
(Vertex tokens) with the same timeouts and size limits.

Every fetch is bounded in time (connect and total) and size, goes through the SSRF guard (``router.netguard``:
http(s) only, no loopback/private/link-local/... addresses, checked on what DNS returns) unless the caller allows
private addresses, and follows redirects itself: each hop is checked again before it is requested, so a public
URL that redirects to ``169.254.169.254`` is refused like the address itself. A hop to another origin
carries none of the request's headers and no body.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from router.netguard import BlockedURLError, check_url, connector_kwargs, private_allowed

REDIRECTS = frozenset({301, 302, 303, 307, 308})
CHUNK = 64 * 1024


class FetchError(Exception):
    """A fetch that failed: refused by the guard, a bad status, too large, too slow, or unreachable. The message
    names the reason, never the URL's query (a signed URL's signature stays out of logs and answers)."""

    def __init__(self, message: str, *, status: int | None = None, refused: bool = False) -> None:
        super().__init__(message)
        self.status = status
        #: The SSRF guard refused the URL (or a redirect hop).
        self.refused = refused


@dataclass(frozen=True)
class FetchPolicy:
    """Limits of one kind of fetch. ``allow_private=None`` follows ``TARASH_ROUTER_ALLOW_PRIVATE_MEDIA_URLS``."""

    max_bytes: int = 64 * 1024 * 1024
    timeout: aiohttp.ClientTimeout = field(default_factory=lambda: aiohttp.ClientTimeout(total=60, sock_connect=10))
    allow_private: bool | None = None
    max_redirects: int = 5

    def private(self) -> bool:
        return self.allow_private if self.allow_private is not None else private_allowed()


#: Input media a vendor needs as bytes (a video input is the largest legitimate case).
INPUT_MEDIA = FetchPolicy()
#: A vendor's result image, fetched to answer ``b64_json``.
RESULT_IMAGE = FetchPolicy(max_bytes=50 * 1024 * 1024)
#: A vendor's result video, streamed through ``/content`` or into a local copy (minutes-long downloads).
RESULT_VIDEO = FetchPolicy(max_bytes=4 * 1024**3,
                           timeout=aiohttp.ClientTimeout(total=600, sock_connect=10, sock_read=60))


@contextlib.asynccontextmanager
async def open_url(url: str, policy: FetchPolicy, *, method: str = "GET", headers: dict[str, str] | None = None,
                   data: Any = None) -> AsyncIterator[aiohttp.ClientResponse]:
    """The 200 answer for ``url`` after redirects, each hop checked; ``FetchError`` otherwise. Read its body
    with ``read_limited`` or ``iter_limited`` so the size limit holds."""
    private = policy.private()
    yielded = False  # errors raised by the caller's block pass through unchanged
    try:
        async with aiohttp.ClientSession(timeout=policy.timeout,
                                         connector=aiohttp.TCPConnector(**connector_kwargs(private))) as session:
            target = URL(url)
            for _ in range(policy.max_redirects + 1):
                check_url(str(target), allow_private=private)
                async with session.request(method, target, headers=headers, data=data,
                                           allow_redirects=False) as response:
                    location = response.headers.get("Location")
                    if response.status in REDIRECTS and location:
                        hop = target.join(URL(location))
                        if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                            method, data = "GET", None
                        # Another origin (compared by hand: URL.origin() raises on the file: URL the next hop's
                        # check refuses). What we send one host (a Vertex token request's signed assertion, its
                        # headers) is not for another: headers are dropped, a body is never re-sent elsewhere.
                        if (hop.scheme, hop.host, hop.port) != (target.scheme, target.host, target.port):
                            if data is not None:
                                raise FetchError(f"{_where(target)} redirects a request with a body to another "
                                                 "origin; not followed")
                            headers = None
                        target = hop
                        continue
                    if response.status != 200:
                        raise FetchError(f"{_where(target)} answered HTTP {response.status}", status=response.status)
                    if response.content_length is not None and response.content_length > policy.max_bytes:
                        raise FetchError(f"{_where(target)} announces {response.content_length} bytes, larger than "
                                         f"the {policy.max_bytes} bytes allowed")
                    yielded = True
                    yield response
                    return
            raise FetchError(f"more than {policy.max_redirects} redirects")
    except BlockedURLError as exc:
        raise FetchError(str(exc), refused=True) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        if yielded:
            raise
        if "non-public" in str(exc):  # the guard's resolver: a name that resolves only to private addresses
            raise FetchError(str(exc), refused=True) from None
        raise FetchError(f"{type(exc).__name__}: {exc}") from exc


async def iter_limited(response: aiohttp.ClientResponse, policy: FetchPolicy) -> AsyncIterator[bytes]:
    """The body in chunks; ``FetchError`` as soon as it grows past the policy's size."""
    total = 0
    async for chunk in response.content.iter_chunked(CHUNK):
        total += len(chunk)
        if total > policy.max_bytes:
            raise FetchError(f"larger than the {policy.max_bytes} bytes allowed")
        yield chunk


async def read_limited(response: aiohttp.ClientResponse, policy: FetchPolicy) -> bytes:
    return b"".join([chunk async for chunk in iter_limited(response, policy)])


async def fetch_bytes(url: str, policy: FetchPolicy) -> tuple[bytes, str | None]:
    """``url``'s body and its ``Content-Type`` (``FetchError`` on any failure)."""
    async with open_url(url, policy) as response:
        try:
            return await read_limited(response, policy), response.headers.get("Content-Type")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FetchError(f"{type(exc).__name__} while reading") from exc


def _where(url: URL) -> str:
    return f"{url.scheme}://{url.host}{':' + str(url.port) if url.explicit_port else ''}{url.path}"
