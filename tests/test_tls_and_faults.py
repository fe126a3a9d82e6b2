"""TLS and mTLS on gRPC; the store and the cache failing under a running hub."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from integration_hub.v1 import credentials_pb2 as pb
from integration_hub.v1 import credentials_pb2_grpc
from tests.harness import free_port, running_hub, settings_for
from tests.store.tcp_proxy import TcpProxy


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(
    tmp: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test-ca", ca_key, None, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert, _ = _write(tmp_path, "ca", ca, ca_key)
    server_cert, server_key_path = _write(
        tmp_path, "server", _certificate("hub", server_key, ("test-ca", ca_key)), server_key
    )
    client_cert, client_key_path = _write(
        tmp_path, "client", _certificate("svc", client_key, ("test-ca", ca_key)), client_key
    )
    return {
        "ca": ca_cert,
        "server_cert": server_cert,
        "server_key": server_key_path,
        "client_cert": client_cert,
        "client_key": client_key_path,
    }


async def _list(target: str, credentials: grpc.ChannelCredentials, token: str) -> int:
    async with grpc.aio.secure_channel(target, credentials) as channel:
        stub = credentials_pb2_grpc.CredentialServiceStub(channel)
        response = await stub.ListCredentials(
            pb.ListCredentialsRequest(), metadata=[("authorization", f"Bearer {token}")], timeout=5
        )
        return len(response.credentials)


async def test_grpc_over_tls(tmp_path: Path, pki: dict[str, Path]) -> None:
    settings = settings_for(
        tmp_path,
        database_url=None,
        tls_cert_file=str(pki["server_cert"]),
        tls_key_file=str(pki["server_key"]),
    )
    async with running_hub(settings) as hut:
        trusted = grpc.ssl_channel_credentials(pki["ca"].read_bytes())
        assert await _list(hut.grpc_target, trusted, hut.tokens.admin) == 0
        async with grpc.aio.insecure_channel(hut.grpc_target) as plain:
            with pytest.raises(grpc.aio.AioRpcError):
                await credentials_pb2_grpc.CredentialServiceStub(plain).ListCredentials(
                    pb.ListCredentialsRequest(), metadata=hut.auth(hut.tokens.admin), timeout=3
                )


async def test_grpc_mtls_requires_a_client_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    settings = settings_for(
        tmp_path,
        database_url=None,
        tls_cert_file=str(pki["server_cert"]),
        tls_key_file=str(pki["server_key"]),
        tls_client_ca_file=str(pki["ca"]),
    )
    async with running_hub(settings) as hut:
        with_cert = grpc.ssl_channel_credentials(
            pki["ca"].read_bytes(), pki["client_key"].read_bytes(), pki["client_cert"].read_bytes()
        )
        assert await _list(hut.grpc_target, with_cert, hut.tokens.admin) == 0
        without_cert = grpc.ssl_channel_credentials(pki["ca"].read_bytes())
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _list(hut.grpc_target, without_cert, hut.tokens.admin)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_store_outage_turns_readiness_503_and_the_hub_recovers(
    postgres_url: str, tmp_path: Path
) -> None:
    from urllib.parse import urlsplit

    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    proxied = postgres_url.replace(f":{target.port}/", f":{proxy.port}/")
    async with running_hub(settings_for(tmp_path, database_url=proxied)) as hut:

        async def ready() -> tuple[int, dict[str, str]]:
            async with hut.http.get(hut.http_base + "/readiness/") as response:
                return response.status, (await response.json())["checks"]

        assert (await ready())[0] == 200
        await proxy.stop()
        status, checks = await ready()
        assert status == 503
        assert checks["store"].startswith("unavailable")
        async with hut.http.get(
            hut.http_base + "/v1/credentials", headers=hut.headers(hut.tokens.admin)
        ) as r:
            # The token may still be cached for a second; either way the answer is a clean error or a list.
            assert r.status in (200, 503)
        async with hut.http.get(hut.http_base + "/healthz/") as live:
            assert live.status == 200
        await proxy.start()
        for _ in range(50):
            if (await ready())[0] == 200:
                break
        assert (await ready())[0] == 200
        async with hut.http.get(
            hut.http_base + "/v1/credentials", headers=hut.headers(hut.tokens.admin)
        ) as r:
            assert r.status == 200
    await proxy.stop()


async def test_calls_keep_working_while_redis_is_unreachable(tmp_path: Path) -> None:
    settings = replace(
        settings_for(tmp_path, database_url=None), redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    async with running_hub(settings) as hut:
        stub, md = hut.credentials_stub(), hut.auth(hut.tokens.admin)
        await stub.CreateCredential(
            pb.CreateCredentialRequest(
                provider="openai", name="main", secret={"api_key": "sk-test-NoRedis0123456789"}
            ),
            metadata=md,
        )
        got = await stub.GetCredential(pb.GetCredentialRequest(id="main"), metadata=md)
        assert got.credential.name == "main"
        async with hut.http.get(hut.http_base + "/readiness/") as response:
            assert response.status == 503


async def test_oversized_grpc_message_is_refused_and_the_hub_keeps_serving(tmp_path: Path) -> None:
    settings = replace(settings_for(tmp_path, database_url=None), max_request_bytes=64 * 1024)
    async with running_hub(settings) as hut:
        stub, md = hut.credentials_stub(), hut.auth(hut.tokens.admin)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateCredential(
                pb.CreateCredentialRequest(provider="openai", name="big", secret={"api_key": "x" * 100_000}),
                metadata=md,
            )
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await stub.ListCredentials(pb.ListCredentialsRequest(), metadata=md)).credentials == []
