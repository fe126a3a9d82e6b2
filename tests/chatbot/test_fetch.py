"""The safe URL fetcher, against real servers on loopback (allowed explicitly where needed)."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import ssl
import time
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from yarl import URL

from chatbot.fetch import (
    FetchFailed,
    FetchPolicy,
    FetchRefused,
    FetchTooLarge,
    SafeFetcher,
    address_refusal,
    parse_allow_list,
)
from tests.chatbot._ingest_fixtures import HostsResolver, LoopbackSite, Page, loopback_policy

# Every class of address the fetcher must refuse, as a URL literal, with the reason it gives.
REFUSED_LITERALS = [
    ("http://127.0.0.1/", "loopback"),
    ("http://127.255.255.254:8080/x", "loopback"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://169.254.10.10/", "link-local"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://239.255.255.250/", "multicast"),
    ("http://100.64.0.1/", "not globally routable"),
    ("http://240.0.0.1/", "private"),  # reserved 240/4: Python files it under is_private too
    ("http://255.255.255.255/", "private"),
    ("http://192.0.2.10/", "private"),  # documentation range
    ("http://[::1]/", "loopback"),
    ("http://[::]/", "unspecified"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "private"),
    ("http://[fd12:3456::1]/", "private"),
    ("http://[ff02::1]/", "multicast"),
    ("http://[fec0::1]/", "site-local"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
    ("http://[::ffff:0.0.0.0]/", "unspecified"),
    ("http://[2002:7f00:1::]/", "loopback (IPv4 127.0.0.1 inside IPv6)"),
    ("http://[64:ff9b::a00:1]/", "private (IPv4 10.0.0.1 inside IPv6)"),
    ("http://[::127.0.0.1]/", "reserved"),
    ("http://[2001:db8::1]/", "private"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED_LITERALS)
async def test_every_forbidden_address_class_is_refused(url: str, reason: str) -> None:
    async with SafeFetcher() as fetcher:
        with pytest.raises(FetchRefused) as caught:
            await fetcher.get(url)
    assert reason in caught.value.reason
    assert caught.value.url == str(URL(url))  # named (yarl normalises IPv6 literals)


@pytest.mark.parametrize(
    "url",
    ["http://127.1/", "http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/", "http://0x7f.1/"],
)
async def test_legacy_numeric_hosts_are_refused(url: str) -> None:
    async with SafeFetcher(loopback_policy()) as fetcher:  # refused even where loopback is allowed
        with pytest.raises(FetchRefused, match="non-canonical numeric address"):
            await fetcher.get(url)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/x",
        "gopher://example.com/",
        "data:text/plain,hi",
        "ws://example.com/",
    ],
)
async def test_schemes_other_than_http_and_https_are_refused(url: str) -> None:
    async with SafeFetcher(loopback_policy()) as fetcher:
        with pytest.raises(FetchRefused, match="is not http or https"):
            await fetcher.get(url)


async def test_credentials_in_a_url_are_refused_and_not_repeated() -> None:
    async with SafeFetcher(loopback_policy()) as fetcher:
        with pytest.raises(FetchRefused, match="credentials") as caught:
            await fetcher.get("https://admin:hunter2@example.com/")
    assert "hunter2" not in str(caught.value)


async def test_a_name_resolving_to_loopback_is_refused() -> None:
    # The system resolver (/etc/hosts) answers localhost with loopback addresses.
    async with SafeFetcher() as fetcher:
        with pytest.raises(FetchRefused, match=r"localhost resolves to .*, which is loopback"):
            await fetcher.get("http://localhost:9/")


async def test_a_name_with_any_forbidden_answer_is_refused_whole() -> None:
    hosts = HostsResolver({"mixed.test": [["93.184.215.14", "10.0.0.5"]]})
    async with SafeFetcher(resolver=hosts) as fetcher:
        with pytest.raises(FetchRefused, match=r"mixed\.test resolves to 10\.0\.0\.5, which is private"):
            await fetcher.get("http://mixed.test/")


async def test_the_connection_goes_to_the_checked_answer_not_a_second_lookup() -> None:
    """DNS rebinding: the name's answer changes from an allowed address to a forbidden one."""
    async with LoopbackSite({"/": Page("hello", content_type="text/plain")}) as site:
        # Only 127.0.0.1 is allowed; 127.0.0.2 is loopback too, so refused.
        policy = FetchPolicy(allow_networks=parse_allow_list("127.0.0.1/32"))
        hosts = HostsResolver({"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
        url = f"http://rebind.test:{site.port}/"
        async with SafeFetcher(policy, resolver=hosts) as fetcher:
            result = await fetcher.get(url)
        assert result.ok
        assert result.body == b"hello"
        assert hosts.calls == ["rebind.test"]  # resolved once for the connection it made
        assert site.hosts == [f"rebind.test:{site.port}"]  # the Host header keeps the name
        async with SafeFetcher(policy, resolver=hosts) as fetcher:
            with pytest.raises(
                FetchRefused, match=r"rebind\.test resolves to 127\.0\.0\.2, which is loopback"
            ):
                await fetcher.get(url)
        assert len(site.requests) == 1  # the second answer was never connected to


async def test_loopback_is_fetched_when_allowed() -> None:
    page = Page("<p>hi</p>".encode("utf-16"), content_type="text/html; charset=utf-16")
    async with LoopbackSite({"/doc": page}) as site, SafeFetcher(loopback_policy()) as fetcher:
        result = await fetcher.get(site.url("/doc"))
    assert result.status == 200
    assert result.content_type == "text/html"
    assert result.charset == "utf-16"
    assert result.text() == "<p>hi</p>"
    assert result.redirects == ()
    assert site.user_agents == {FetchPolicy().user_agent}


async def test_a_non_2xx_status_is_returned_not_raised() -> None:
    async with LoopbackSite({}) as site, SafeFetcher(loopback_policy()) as fetcher:
        result = await fetcher.get(site.url("/missing"))
    assert result.status == 404
    assert not result.ok


def _redirect(location: str, status: int = 302) -> Page:
    return Page("", status=status, headers={"Location": location})


async def test_redirects_are_followed_and_recorded() -> None:
    pages: dict[str, Page] = {
        "/a": _redirect("/b", 301),
        "/b": _redirect("c", 307),
        "/c": Page("final", content_type="text/plain"),
    }
    async with LoopbackSite(pages) as site, SafeFetcher(loopback_policy()) as fetcher:
        result = await fetcher.get(site.url("/a"))
    assert result.body == b"final"
    assert result.url == site.url("/c")
    assert result.redirects == (site.url("/a"), site.url("/b"))


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://10.0.0.1/internal", "address 10.0.0.1 is private"),
        ("http://169.254.169.254/latest/meta-data/iam", "cloud metadata"),
        ("http://[::1]/", "loopback"),
        ("http://127.0.0.2/", "loopback"),
        ("file:///etc/passwd", "scheme 'file' is not http or https"),
    ],
)
async def test_a_redirect_to_a_forbidden_place_is_refused(target: str, reason: str) -> None:
    # Only the test server's own address is allowed: the redirect must not widen that.
    policy = FetchPolicy(allow_networks=parse_allow_list("127.0.0.1/32"))
    async with LoopbackSite({"/go": _redirect(target)}) as site, SafeFetcher(policy) as fetcher:
        with pytest.raises(FetchRefused) as caught:
            await fetcher.get(site.url("/go"))
    assert reason in caught.value.reason
    assert site.requests == ["/go"]


async def test_redirects_are_bounded() -> None:
    pages = {"/loop": _redirect("/loop")}
    async with LoopbackSite(pages) as site, SafeFetcher(loopback_policy(max_redirects=3)) as fetcher:
        with pytest.raises(FetchRefused, match="more than 3 redirects"):
            await fetcher.get(site.url("/loop"))
    assert len(site.requests) == 4


async def test_a_declared_oversized_body_is_refused_before_reading() -> None:
    pages = {"/big": Page(b"x" * 5000, content_type="application/octet-stream")}
    async with LoopbackSite(pages) as site, SafeFetcher(loopback_policy(max_bytes=4096)) as fetcher:
        with pytest.raises(FetchTooLarge, match="body of 5000 bytes is over the 4096-byte limit"):
            await fetcher.get(site.url("/big"))


async def test_a_streamed_body_is_cut_at_the_cap() -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(1000):  # 64 MiB if nobody stops reading
            await response.write(b"y" * 65536)
        return response

    site = LoopbackSite({"/stream": endless})
    async with site, SafeFetcher(loopback_policy(max_bytes=200_000)) as fetcher:
        with pytest.raises(FetchTooLarge, match="over the 200000-byte limit"):
            await fetcher.get(site.url("/stream"))


async def test_the_cap_applies_after_decompression() -> None:
    bomb = gzip.compress(b"\0" * 10_000_000)  # about 10 KB on the wire
    pages = {"/bomb": Page(bomb, content_type="text/plain", headers={"Content-Encoding": "gzip"})}
    async with LoopbackSite(pages) as site, SafeFetcher(loopback_policy(max_bytes=1_000_000)) as fetcher:
        with pytest.raises(FetchTooLarge, match="over the 1000000-byte limit"):
            await fetcher.get(site.url("/bomb"))


async def test_a_slow_server_times_out() -> None:
    pages = {"/slow": Page("late", delay=3.0)}
    async with LoopbackSite(pages) as site, SafeFetcher(loopback_policy(total_timeout=0.5)) as fetcher:
        started = time.monotonic()
        with pytest.raises(FetchFailed, match=r"timed out \(limits: connect 10 s, read 20 s, total 0.5 s\)"):
            await fetcher.get(site.url("/slow"))
        assert time.monotonic() - started < 2


async def test_a_closed_port_is_a_failure_not_a_refusal() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    async with SafeFetcher(loopback_policy()) as fetcher:
        with pytest.raises(FetchFailed, match=f"http://127.0.0.1:{port}/"):
            await fetcher.get(f"http://127.0.0.1:{port}/")


async def test_an_unknown_name_is_a_failure() -> None:
    async with SafeFetcher(resolver=HostsResolver({})) as fetcher:
        with pytest.raises(FetchFailed, match=r"cannot resolve host 'nowhere\.test'"):
            await fetcher.get("http://nowhere.test/")


def test_allow_list_parsing() -> None:
    assert parse_allow_list("127.0.0.0/8, ::1 10.0.0.7") == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("10.0.0.7/32"),
    )
    assert parse_allow_list("") == ()
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not an IP address or network"):
        parse_allow_list("10.0.0.0/33")


def test_the_allow_list_admits_mapped_forms_of_allowed_addresses() -> None:
    allow = parse_allow_list("127.0.0.0/8")
    assert address_refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allow) is None
    assert address_refusal(ipaddress.ip_address("127.0.0.1"), allow) is None
    assert address_refusal(ipaddress.ip_address("10.0.0.1"), allow) == "private"
    assert address_refusal(ipaddress.ip_address("8.8.8.8")) is None
    assert address_refusal(ipaddress.ip_address("2001:4860:4860::8888")) is None


def test_policy_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="max_bytes must be positive"):
        FetchPolicy(max_bytes=0)
    with pytest.raises(ValueError, match="timeouts must be positive"):
        FetchPolicy(total_timeout=0)


async def test_use_outside_the_context_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="outside `async with`"):
        await SafeFetcher().get("http://example.com/")


async def test_a_missing_content_type_reads_as_empty() -> None:
    # aiohttp's server always sends a Content-Type, so this one speaks raw HTTP/1.1.
    async def bare(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\n<p>untyped</p>")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(bare, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with SafeFetcher(loopback_policy()) as fetcher:
            result = await fetcher.get(f"http://127.0.0.1:{port}/")
    finally:
        server.close()
        await server.wait_closed()
    assert result.content_type == ""
    assert result.body == b"<p>untyped</p>"


async def test_an_invalid_url_is_refused() -> None:
    async with SafeFetcher(loopback_policy()) as fetcher:
        with pytest.raises(FetchRefused, match="no host"):
            await fetcher.get("http:///path-only")


def _tls_pair(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for `name`, and a client trusting only it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_tls_keeps_the_name_for_sni_and_the_certificate_while_connecting_to_the_checked_address(
    tmp_path: Path,
) -> None:
    server_context, client_context = _tls_pair(tmp_path, "secure.test")
    seen_sni: list[str | None] = []

    def record_sni(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        seen_sni.append(name)

    server_context.sni_callback = record_sni

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"host={request.host}")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = runner.addresses[0][1]
    hosts = HostsResolver({"secure.test": [["127.0.0.1"]], "other.test": [["127.0.0.1"]]})
    try:
        async with SafeFetcher(loopback_policy(), resolver=hosts, ssl_context=client_context) as fetcher:
            result = await fetcher.get(f"https://secure.test:{port}/")
            assert result.text() == f"host=secure.test:{port}"
            assert seen_sni == ["secure.test"]
            # The same address under a name the certificate does not carry fails verification.
            with pytest.raises(FetchFailed, match="certificate"):
                await fetcher.get(f"https://other.test:{port}/")
    finally:
        await runner.cleanup()
