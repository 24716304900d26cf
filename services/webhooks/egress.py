"""The HTTP client that posts webhooks: tenants choose the URLs, the server fetches them, so it must
not be turned against the deployment's own network (SSRF).

Every request's host is resolved once, each of its addresses is checked, and the connection goes to
the checked address (the URL's host is replaced by it; the Host header and TLS's SNI and certificate
check keep the name): a DNS answer that changes between check and connect (rebinding) cannot move
the request elsewhere. Loopback, private, link-local, carrier-grade NAT, multicast, unspecified,
reserved and cloud metadata addresses are refused unless the deployment allows them
(VOXPLANE_WEBHOOK_ALLOW: CIDRs and host names). Redirects are not followed at all (a 3xx answer is a
failed delivery), so no redirect can lead anywhere unchecked; environment proxies are ignored, since a
proxy would connect to the name itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx

from ..core.config import settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services (AWS, GCP, Azure, Oracle, Alibaba), some outside the ranges refused anyway.
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(Exception):
    """A URL the server will not post to; the message says why and how to allow it."""


@dataclass(frozen=True)
class Allowlist:
    """Addresses and host names exempt from the refusal, for development and tests."""

    networks: tuple[IpNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str) -> Allowlist:
        """`127.0.0.0/8, ::1, receiver.internal`: CIDRs or single addresses, and host names."""
        networks: list[IpNetwork] = []
        hosts: set[str] = set()
        for entry in filter(None, (part.strip() for part in text.split(","))):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def of_settings(text: str) -> Allowlist:
        return Allowlist.parse(text)

    def allows(self, host: str, address: IpAddress) -> bool:
        return host.lower().rstrip(".") in self.hosts or any(address in network for network in self.networks)


def why_refused(address: IpAddress) -> str | None:
    """What kind of address this is when it is one the server must not reach; None when public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return why_refused(embedded)
    checks = (
        (address in METADATA, "a cloud metadata address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_unspecified, "an unspecified address"),
        (isinstance(address, ipaddress.IPv4Address) and address in CGNAT, "a carrier-grade NAT address"),
        (address.is_private, "a private address"),
        (not address.is_global, "a reserved address"),
    )
    return next((why for refused, why in checks if refused), None)


async def checked_address(host: str, port: int, allow: Allowlist) -> IpAddress:
    """The address to connect to for `host`: resolved once, every address it has checked (one bad
    address refuses the name: which one a later lookup returns is the name owner's choice)."""
    literal = True
    try:
        addresses: list[IpAddress] = [ipaddress.ip_address(host)]  # an address: no lookup, nor its thread hop
    except ValueError:
        literal = False
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise Refused(f"{host} does not resolve ({error.strerror})") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))
    for address in addresses:
        why = why_refused(address)
        if why is not None and not allow.allows(host, address):
            shown = host if literal else f"{host} resolves to {address}, which"
            raise Refused(
                f"{shown} is {why}: the server sends no request there (webhooks, audio to play) unless "
                "VOXPLANE_WEBHOOK_ALLOW allows it"
            )
    return addresses[0]


def configured() -> Allowlist:
    """VOXPLANE_WEBHOOK_ALLOW, as it is set now."""
    return Allowlist.of_settings(settings().webhook_allow)


# Connections per pool. httpcore looks at every connection of a pool (and, for each, counts the idle
# ones) whenever a request starts or ends, so one pool of 32 connections costs more CPU than the posts
# themselves: a host gets several small pools ("lanes") instead, and requests wait for room in ours,
# never in httpcore's queue.
LANE = 4
USER_AGENT = {"user-agent": "voxplane-webhooks/1"}


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every lane: loading the CA bundle costs ~50 ms each time."""
    return httpx.create_ssl_context()


class _Released(httpx.AsyncByteStream):
    """A response body that gives its lane's room back when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]):
        self._stream, self._release = stream, release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        release, self._release = self._release, lambda: None  # once, however often it is closed
        try:
            await self._stream.aclose()
        finally:
            release()


class _Host:
    """The lanes of one scheme, host name and port, with at most `LANE` requests in each."""

    def __init__(self, lanes: int):
        self.room = asyncio.Semaphore(lanes * LANE)
        self.pools: list[httpx.AsyncHTTPTransport] = []
        self.busy: list[int] = []

    def take(self) -> int:
        """The lane for a request that holds `room`: the busiest one with room left, so that light
        traffic keeps to few warm connections; a new one when all are full."""
        open_lanes = [lane for lane, busy in enumerate(self.busy) if busy < LANE]
        if not open_lanes:
            limits = httpx.Limits(max_connections=LANE, max_keepalive_connections=LANE)
            self.pools.append(httpx.AsyncHTTPTransport(verify=_tls(), limits=limits, retries=0))
            self.busy.append(0)
            open_lanes = [len(self.pools) - 1]
        lane = max(open_lanes, key=self.busy.__getitem__)
        self.busy[lane] += 1
        return lane

    def give_back(self, lane: int) -> None:
        self.busy[lane] -= 1
        self.room.release()


class GuardedTransport(httpx.AsyncBaseTransport):
    """Connects each request to its host's checked address. Connections are pooled per host name, so
    that a connection made (and its certificate checked) for one name never carries a request for
    another name served at the same address."""

    HOSTS_KEPT = 256  # hosts whose idle connections stay open: tenants name as many hosts as they like

    def __init__(self, allow: Callable[[], Allowlist], connections: int):
        self._allow = allow
        self._lanes = max(1, -(-connections // LANE))
        self._hosts: collections.OrderedDict[tuple[str, str, int], _Host] = collections.OrderedDict()

    async def _host(self, key: tuple[str, str, int]) -> _Host:
        """The lanes of `key`, the most recently used last; past HOSTS_KEPT, the least recently used
        host with nothing in flight is closed."""
        host = self._hosts.get(key)
        if host is not None:
            self._hosts.move_to_end(key)
            return host
        if len(self._hosts) >= self.HOSTS_KEPT:
            idle = next((k for k, h in self._hosts.items() if not any(h.busy)), None)
            if idle is not None:
                await asyncio.gather(*(pool.aclose() for pool in self._hosts.pop(idle).pools))
        host = self._hosts[key] = _Host(self._lanes)
        return host

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise Refused(f"{url.scheme}: is not http or https")
        port = url.port or (443 if url.scheme == "https" else 80)
        address = await checked_address(url.host, port, self._allow())
        request.url = url.copy_with(host=str(address))  # Host header was set from the name already
        if url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": url.host}
        host = await self._host((url.scheme, url.host, port))
        await host.room.acquire()
        lane = host.take()
        try:
            response = await host.pools[lane].handle_async_request(request)
        except BaseException:
            host.give_back(lane)
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Released(response.stream, functools.partial(host.give_back, lane))
        return response

    async def aclose(self) -> None:
        await asyncio.gather(*(pool.aclose() for host in self._hosts.values() for pool in host.pools))
        self._hosts.clear()


class Poster:
    """Posts only where the address checks and `allow()` (by default: the setting, read at each
    request) permit, with at most `connections` connections per host, never following a redirect or
    an environment proxy. It drives httpx's transport without httpx's client: cookies, auth, redirects
    and URL merging cost about a third of each post, and a webhook needs none of them."""

    URLS_KEPT = 4096

    def __init__(self, allow: Callable[[], Allowlist] = lambda: configured(), *, connections: int = 200):
        self._transport = GuardedTransport(allow, connections)
        self._urls: dict[str, httpx.URL] = {}  # parsed once: most deliveries go to a few URLs

    def _url(self, url: str) -> httpx.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= self.URLS_KEPT:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    @contextlib.asynccontextmanager
    async def post(self, url: str, content: bytes, headers: dict[str, str]) -> AsyncIterator[httpx.Response]:
        """The answer to one POST, its body still to be read, closed on leaving. The
        caller bounds the time it takes (asyncio.timeout): no step of it waits unbounded otherwise."""
        async with self._send(httpx.Request("POST", self._url(url), content=content,
                                            headers={**USER_AGENT, **headers})) as response:
            yield response

    @contextlib.asynccontextmanager
    async def get(self, url: str) -> AsyncIterator[httpx.Response]:
        """The answer to one GET (an announcement to play), as `post`: body unread, bounded by the caller."""
        async with self._send(httpx.Request("GET", self._url(url), headers=USER_AGENT)) as response:
            yield response

    @contextlib.asynccontextmanager
    async def _send(self, request: httpx.Request) -> AsyncIterator[httpx.Response]:
        response = await self._transport.handle_async_request(request)
        try:
            yield response
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()
