"""The safe URL fetcher: what the chatbot uses for every URL a bot's owner gives it.

A URL to ingest comes from a tenant, so fetching it must not become a way into the hub's own
network (server-side request forgery). The fetcher:

- fetches only http and https, and refuses URLs that carry credentials (user:password@), which
  would end up in logs and error messages;
- refuses any address that is not globally routable: loopback, private, link-local (with the
  cloud metadata service at 169.254.169.254), shared (100.64/10), multicast, unspecified
  (0.0.0.0, ::), reserved and documentation ranges, in IPv4 and IPv6, looking through IPv4
  addresses embedded in IPv6 ones (IPv4-mapped ::ffff:a.b.c.d, 6to4, NAT64); an address in the
  explicit allow-list (`FetchPolicy.allow_networks`, e.g. 127.0.0.0/8 in tests) is let through;
- checks the address it connects to, not the name: the name is resolved once per connection by
  the connector's resolver, every address it returns is checked, and the connection goes to
  those checked addresses, so a DNS answer that changes between a check and the connection
  (DNS rebinding) cannot slip through; the Host header and TLS SNI/certificate check keep the
  name. A name that resolves to any refused address is refused whole. IP literals, which aiohttp
  does not pass to its resolver, are checked before the request, and the legacy numeric forms
  (127.1, 2130706433, 0x7f.0.0.1) are refused outright;
- follows redirects itself, at most `max_redirects`, each hop under the same rules;
- caps the body while streaming it (after decompression, so a compressed bomb is cut too), and
  bounds every request with connect, read and total timeouts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import aiohttp
from aiohttp import hdrs
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

DEFAULT_USER_AGENT = "integration-hub-chatbot/0.1 (+https://github.com/integration-hub)"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SCHEMES = frozenset({"http", "https"})

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_METADATA = ipaddress.IPv4Address("169.254.169.254")


def parse_allow_list(spec: str) -> tuple[IPNetwork, ...]:
    """Networks from a comma- or space-separated list of CIDRs or addresses ("127.0.0.0/8, ::1")."""
    networks = []
    for entry in re.split(r"[,\s]+", spec.strip()):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ValueError(f"fetch allow-list entry {entry!r} is not an IP address or network") from exc
    return tuple(networks)


@dataclass(slots=True, frozen=True)
class FetchPolicy:
    """What the fetcher may reach, and how much it reads."""

    allow_networks: tuple[IPNetwork, ...] = ()  # let through despite the rules above
    max_bytes: int = 5 * 1024 * 1024  # per response body, decompressed
    max_redirects: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 20.0  # between two reads of the body
    total_timeout: float = 60.0  # a whole fetch, redirects included
    max_connections: int = 16
    user_agent: str = DEFAULT_USER_AGENT

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_redirects < 0:
            raise ValueError("fetch max_bytes must be positive and max_redirects not negative")
        if min(self.connect_timeout, self.read_timeout, self.total_timeout) <= 0:
            raise ValueError("fetch timeouts must be positive")


class FetchError(Exception):
    """A URL that could not be fetched; the message names the URL (credentials removed) and why."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class FetchRefused(FetchError):
    """Refused by policy: scheme, credentials, address, or too many redirects."""


class FetchTooLarge(FetchError):
    """The body is larger than the policy's max_bytes."""


class FetchFailed(FetchError):
    """The network failed: name resolution, connection, TLS, timeout, broken response."""


@dataclass(slots=True, frozen=True)
class FetchResult:
    url: str  # the final URL, after redirects
    status: int
    content_type: str  # the media type, lower case, without parameters ("" when absent)
    charset: str | None
    body: bytes
    redirects: tuple[str, ...] = field(default=())  # the URLs that redirected, in order

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self) -> str:
        try:
            return self.body.decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4 or NAT64 address leads to, if it is one."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _classify(address: IPAddress) -> str | None:
    """Why an address is refused ("loopback", ...), or None when it is globally routable."""
    if address == _METADATA:
        return "link-local (the cloud metadata service)"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    )
    for name, refused in checks:
        if refused:
            return name
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if not address.is_global:  # shared 100.64/10, benchmarking, documentation, ...
        return "not globally routable"
    return None


def address_refusal(address: IPAddress, allow: tuple[IPNetwork, ...] = ()) -> str | None:
    """Why the fetcher would refuse to connect to an address, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:  # fe80::1%eth0: the zone aside, the same address
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d on the wire
            address = address.ipv4_mapped
    embedded = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    candidates: list[IPAddress] = [address] if embedded is None else [embedded, address]
    if any(candidate in network for candidate in candidates for network in allow):
        return None
    for candidate in candidates:
        reason = _classify(candidate)
        if reason is not None:
            return reason if candidate is address else f"{reason} (IPv4 {candidate} inside IPv6)"
    return None


def redact(url: URL) -> str:
    """A URL fit for a message: no user or password."""
    return str(url.with_user(None)) if url.raw_user or url.raw_password else str(url)


_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)


def check_url(url: URL, allow: tuple[IPNetwork, ...] = ()) -> None:
    """Refuse what can be refused before any connection: scheme, credentials, a literal address."""
    shown = redact(url)
    if url.scheme.lower() not in _SCHEMES:
        raise FetchRefused(shown, f"scheme {url.scheme or '(none)'!r} is not http or https")
    if url.raw_user or url.raw_password:
        raise FetchRefused(shown, "credentials in a URL are refused (they would leak into logs)")
    host = url.raw_host
    if not host:
        raise FetchRefused(shown, "no host")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is None:
        labels = host.rstrip(".").split(".")
        if all(_NUMERIC_LABEL.match(label) for label in labels):
            raise FetchRefused(shown, f"host {host!r} is a non-canonical numeric address")
        return
    reason = address_refusal(literal, allow)
    if reason is not None:
        raise FetchRefused(shown, f"address {literal} is {reason}")


class _AddressRefused(Exception):
    def __init__(self, host: str, address: str, reason: str) -> None:
        super().__init__(f"{host} resolves to {address}, which is {reason}")


class GuardedResolver(AbstractResolver):
    """A resolver that returns a name's addresses only when every one of them may be reached.

    The connector connects to exactly what this returns, so the check and the connection use
    one and the same DNS answer.
    """

    def __init__(self, allow: tuple[IPNetwork, ...], inner: AbstractResolver | None = None) -> None:
        self._allow = allow
        self._inner = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not results:
            raise OSError(f"{host} has no address")
        for result in results:
            reason = address_refusal(ipaddress.ip_address(result["host"]), self._allow)
            if reason is not None:
                raise _AddressRefused(host, result["host"], reason)
        return results

    async def close(self) -> None:
        await self._inner.close()


class SafeFetcher:
    """GET under a FetchPolicy; use as `async with SafeFetcher(policy) as fetcher`."""

    def __init__(
        self,
        policy: FetchPolicy | None = None,
        *,
        resolver: AbstractResolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`resolver` answers names (default: the system's); every answer is checked all the same.

        `ssl_context` trusts a private CA; by default certificates are verified against the
        system's CAs and the URL's host name.
        """
        self.policy = policy or FetchPolicy()
        self._inner_resolver = resolver
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        policy = self.policy
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(policy.allow_networks, self._inner_resolver),
            use_dns_cache=False,  # every connection resolves, and so is checked, afresh
            family=socket.AF_UNSPEC,
            limit=policy.max_connections,
            ssl=self._ssl,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,  # a proxy from the environment would resolve names where we cannot check
            cookie_jar=aiohttp.DummyCookieJar(),  # no state carried from one site to another
            auto_decompress=True,
            timeout=aiohttp.ClientTimeout(
                total=policy.total_timeout, connect=policy.connect_timeout, sock_read=policy.read_timeout
            ),
            headers={"User-Agent": policy.user_agent},
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, url: str, *, accept: str = "*/*", max_bytes: int | None = None) -> FetchResult:
        """The final response of a GET, any status; raises FetchError for what it cannot fetch."""
        if self._session is None:
            raise RuntimeError("SafeFetcher used outside `async with`")
        limit = max_bytes if max_bytes is not None else self.policy.max_bytes
        try:
            parsed = URL(url)
        except (ValueError, TypeError) as exc:
            raise FetchRefused(repr(url), f"not a valid URL ({exc})") from None
        try:
            async with asyncio.timeout(self.policy.total_timeout):
                return await self._follow(self._session, parsed, accept, limit)
        except TimeoutError:
            raise FetchFailed(redact(parsed), f"timed out ({self._limits()})") from None

    def _limits(self) -> str:
        policy = self.policy
        return (
            f"limits: connect {policy.connect_timeout:g} s, read {policy.read_timeout:g} s, "
            f"total {policy.total_timeout:g} s"
        )

    async def _follow(self, session: aiohttp.ClientSession, url: URL, accept: str, limit: int) -> FetchResult:
        redirects: list[str] = []
        while True:
            check_url(url, self.policy.allow_networks)
            shown = redact(url)
            try:
                async with session.get(url, allow_redirects=False, headers={"Accept": accept}) as response:
                    location = response.headers.get("Location")
                    if response.status in _REDIRECTS and location:
                        target = url.join(URL(location))
                    else:
                        body = await _read_capped(response, shown, limit)
                        return FetchResult(
                            url=shown,
                            status=response.status,
                            # aiohttp reads a missing Content-Type as application/octet-stream
                            content_type=response.content_type.lower()
                            if hdrs.CONTENT_TYPE in response.headers
                            else "",
                            charset=response.charset,
                            body=body,
                            redirects=tuple(redirects),
                        )
            except _AddressRefused as exc:
                raise FetchRefused(shown, str(exc)) from None
            except aiohttp.ClientConnectorDNSError:
                raise FetchFailed(shown, f"cannot resolve host {url.host!r}") from None
            except aiohttp.InvalidURL as exc:
                raise FetchRefused(shown, f"invalid URL ({exc})") from None
            except TimeoutError:  # aiohttp's connect and read timeouts (the total one is get's)
                raise FetchFailed(shown, f"timed out ({self._limits()})") from None
            except (aiohttp.ClientError, OSError) as exc:
                raise FetchFailed(shown, f"{type(exc).__name__}: {exc}") from None
            redirects.append(shown)
            if len(redirects) > self.policy.max_redirects:
                raise FetchRefused(shown, f"more than {self.policy.max_redirects} redirects")
            url = target


async def _read_capped(response: aiohttp.ClientResponse, shown: str, limit: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > limit:
        raise FetchTooLarge(shown, f"body of {declared} bytes is over the {limit}-byte limit")
    parts: list[bytes] = []
    size = 0
    async for part in response.content.iter_chunked(64 * 1024):
        size += len(part)
        if size > limit:
            raise FetchTooLarge(shown, f"body is over the {limit}-byte limit")
        parts.append(part)
    return b"".join(parts)
