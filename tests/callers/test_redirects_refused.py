"""A redirect never carries a key anywhere: every provider's HTTP path refuses to follow one.

Two loopback servers: `redirector` answers every request (websocket upgrades included)
with a 302 or 307 whose Location points at `target`, which records whatever reaches it.
Each provider with VERIFY is pointed at the redirector through its URL option(s); the
call must fail with a caller error naming the redirect, `target` must see nothing, and
neither the key nor the Location's query may appear in the error or its traceback.
aiohttp and httpx drop only Authorization on a cross-origin redirect, not the custom key
headers (xi-api-key, api-key, Ocp-Apim-Subscription-Key, Token, X-API-Key, ...), so a
followed redirect would be a leak.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from callers import pools, registry
from callers.base import (
    CallerError,
    Capability,
    ProviderUnavailable,
    SecretFields,
    StreamTextSynthesizer,
    StreamTranscriber,
)
from callers.types import FLUSH, AudioContainer, AudioEncoding, AudioFormat, TextInput
from callers.types.speech import StreamTranscribeRequest, SynthesizeRequest
from tests.fakes.secret_fields import PlainSecret

KEY = "rk-redirect-probe-KEY-5f0c2a9e7d"
KEY_ID = "AKIAREDIRECTPROBE0001"
# In the Location's query: a redirect may point at a signed URL; its query is never quoted.
LOCATION_QUERY = "sig=location-query-must-not-be-quoted"
TIMEOUT = 3.0
PCM_16K = AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, 16000)
PROJECT = "redirect-probe"
SERVICE_ACCOUNT = f"probe@{PROJECT}.iam.gserviceaccount.com"


# --- the servers --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Loopback:
    """One aiohttp server on 127.0.0.1 answering every method and path with `handler`."""

    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handler)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Servers:
    status: int
    seen_by_target: list[Seen] = field(default_factory=list)
    redirected: list[Seen] = field(default_factory=list)  # what the redirector answered
    target: Loopback = field(init=False)
    redirector: Loopback = field(init=False)
    issuer: Loopback = field(init=False)  # a Google token endpoint that is not redirected

    def __post_init__(self) -> None:
        self.target = Loopback(self._record)
        self.redirector = Loopback(self._redirect)
        self.issuer = Loopback(self._token)

    @property
    def url(self) -> str:
        return self.redirector.url

    async def _record(self, request: web.Request) -> web.Response:
        self.seen_by_target.append(Seen(request.method, request.path, dict(request.headers)))
        return web.json_response({})

    async def _redirect(self, request: web.Request) -> web.Response:
        self.redirected.append(Seen(request.method, request.path, dict(request.headers)))
        location = f"{self.target.url}{request.path}?{LOCATION_QUERY}"
        return web.Response(status=self.status, headers={"Location": location})

    async def _token(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"access_token": "ya29.redirect-probe", "expires_in": 3599})


@pytest.fixture(params=[302, 307], ids=["302", "307"])
async def servers(request: pytest.FixtureRequest) -> AsyncIterator[Servers]:
    found = Servers(status=request.param)
    for server in (found.target, found.redirector, found.issuer):
        await server.start()
    try:
        yield found
    finally:
        await pools.close_all()
        for server in (found.target, found.redirector, found.issuer):
            await server.stop()


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem_of(private_key: rsa.RSAPrivateKey) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def key_file(private_key: rsa.RSAPrivateKey, token_uri: str) -> PlainSecret:
    pem = pem_of(private_key)
    document = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem,
        "client_email": SERVICE_ACCOUNT,
        "client_id": "100000000000000000001",
        "token_uri": token_uri,
    }
    return PlainSecret(service_account_json=json.dumps(document))


# --- the cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Env:
    servers: Servers
    private_key: rsa.RSAPrivateKey

    @property
    def url(self) -> str:
        return self.servers.url


def api_key(env: Env) -> SecretFields:
    return PlainSecret(api_key=KEY)


@dataclass(frozen=True)
class Case:
    """One provider pointed at the redirector: its secret, its options, and the call."""

    provider: str
    options: Callable[[Env], Mapping[str, str]]
    secret: Callable[[Env], SecretFields] = api_key
    call: str = "verify"  # or "stream_stt" / "stream_tts_input"


def skipped(provider: str, reason: str, variant: str = "") -> Any:
    return pytest.param(None, id=f"{provider}{variant}", marks=pytest.mark.skip(reason=reason))


def base(path: str = "") -> Callable[[Env], Mapping[str, str]]:
    return lambda env: {"base_url": f"{env.url}{path}"}


def vertex(base_url: Callable[[Env], str]) -> Callable[[Env], Mapping[str, str]]:
    return lambda env: {"project": PROJECT, "location": "us-central1", "base_url": base_url(env)}


# Every HTTP path of every provider with VERIFY: REST through the pooled aiohttp session
# (refused by its middleware), REST through an SDK's httpx/httpx2 client (follow_redirects
# off), botocore (urllib3 with redirect=False), and the OAuth token exchange of the Google
# service-account providers (aiohttp, to the key file's token_uri). A provider that gains
# VERIFY without an entry here fails test_verify_refuses_redirects until it has one.
VERIFY_CASES: dict[str, list[Any]] = {
    "openai": [Case("openai", base("/v1"))],
    "azure_openai": [Case("azure_openai", lambda env: {"endpoint": env.url, "api_version": "2024-10-21"})],
    "anthropic": [Case("anthropic", base())],
    "gemini": [Case("gemini", base())],
    "vertex_ai": [
        pytest.param(
            Case(
                "vertex_ai",
                vertex(lambda env: env.url),
                secret=lambda env: key_file(env.private_key, f"{env.servers.issuer.url}/token"),
            ),
            id="vertex_ai-base_url",
        ),
        pytest.param(
            Case(
                "vertex_ai",
                vertex(lambda env: env.servers.target.url),  # never reached: the token fails first
                secret=lambda env: key_file(env.private_key, f"{env.url}/token"),
            ),
            id="vertex_ai-token_uri",
        ),
    ],
    "bedrock": [
        Case(
            "bedrock",
            lambda env: {"region": "us-east-1", "control_endpoint_url": env.url, "endpoint_url": env.url},
            secret=lambda env: PlainSecret(access_key_id=KEY_ID, secret_access_key=KEY),
        )
    ],
    "cohere": [Case("cohere", base())],
    "mistral": [Case("mistral", base("/v1"))],
    "huggingface": [Case("huggingface", base("/v1"))],
    "replicate": [
        Case("replicate", base("/v1"), secret=lambda env: PlainSecret(api_token=KEY)),
    ],
    "voyageai": [Case("voyageai", base("/v1"))],
    "openrouter": [Case("openrouter", base("/api/v1"))],
    "openai_compatible": [Case("openai_compatible", base("/v1"))],
    "local": [skipped("local", "no HTTP at all: the model runs in the hub's process from installed files")],
    "google_speech": [
        pytest.param(
            Case(
                "google_speech",
                lambda env: {"project": PROJECT, "endpoint": env.servers.target.url},
                secret=lambda env: key_file(env.private_key, f"{env.url}/token"),
            ),
            id="google_speech-token_uri",
        ),
        skipped(
            "google_speech",
            "the Speech/TTS APIs are reached over gRPC (HTTP/2 frames, grpc.aio channels): gRPC has "
            "no redirects to follow; only the token exchange is HTTP, covered by -token_uri",
            "-grpc_endpoint",
        ),
    ],
    "azure_speech": [Case("azure_speech", lambda env: {"region": "eastus", "endpoint": env.url})],
    "deepgram": [Case("deepgram", base())],
    "assemblyai": [Case("assemblyai", lambda env: {"base_url": env.url, "streaming_url": env.url})],
    "cartesia": [Case("cartesia", base())],
    "sarvam": [Case("sarvam", base())],
    "elevenlabs": [Case("elevenlabs", base())],
    "vonage": [
        Case(
            "vonage",
            lambda env: {"application_id": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", "api_base_url": env.url},
            secret=lambda env: PlainSecret(private_key=pem_of(env.private_key), signature_secret=KEY),
        )
    ],
    "twilio": [
        Case(
            "twilio",
            lambda env: {"account_sid": "AC" + "0" * 32, "api_base_url": env.url},
            secret=lambda env: PlainSecret(auth_token=KEY),
        )
    ],
    "exotel": [
        Case(
            "exotel",
            lambda env: {"account_sid": "redirectprobe1", "api_key": KEY_ID, "api_base_url": env.url},
            secret=lambda env: PlainSecret(api_token=KEY),
        )
    ],
}


def verify_providers() -> list[str]:
    return [name for name in registry.PROVIDERS if Capability.VERIFY in registry.spec(name).capabilities]


def verify_params() -> list[Any]:
    params: list[Any] = []
    for name in verify_providers():
        cases = VERIFY_CASES.get(name)
        if cases is None:
            # A provider that gained VERIFY without a case here: fail until it has one.
            params.append(pytest.param(name, id=f"{name}-no-case"))
            continue
        for case in cases:
            params.append(case if not isinstance(case, Case) else pytest.param(case, id=case.provider))
    return params


# Websocket callers: the upgrade request is answered with the redirect. ws_connect
# follows redirects by default; the pooled session's middleware refuses them.
STREAM_CASES = [
    pytest.param(Case("sarvam", base(), call="stream_stt"), id="sarvam-stt"),
    pytest.param(Case("sarvam", base(), call="stream_tts_input"), id="sarvam-tts_input"),
    pytest.param(Case("cartesia", base(), call="stream_stt"), id="cartesia-stt"),
    pytest.param(Case("cartesia", base(), call="stream_tts_input"), id="cartesia-tts_input"),
    pytest.param(Case("elevenlabs", base(), call="stream_tts_input"), id="elevenlabs-tts_input"),
    pytest.param(Case("deepgram", base(), call="stream_stt"), id="deepgram-live"),
    pytest.param(
        Case("assemblyai", lambda env: {"base_url": env.url, "streaming_url": env.url}, call="stream_stt"),
        id="assemblyai-streaming",
    ),
    pytest.param(
        Case("azure_speech", lambda env: {"region": "eastus", "endpoint": env.url}, call="stream_stt"),
        id="azure_speech-realtime",
    ),
]

# What each stream asks for: valid requests, so that the caller gets as far as connecting.
STT_REQUESTS = {
    "azure_speech": StreamTranscribeRequest(PCM_16K, language="en-US"),
    "sarvam": StreamTranscribeRequest(PCM_16K, language="en-IN"),
    "cartesia": StreamTranscribeRequest(PCM_16K, language="en"),
}
TTS_INPUT_REQUESTS = {
    "sarvam": SynthesizeRequest("", "vidya", PCM_16K, language="en-IN"),
    "cartesia": SynthesizeRequest("", "a0e99841-438c-4a64-b679-ae501e7d6091", PCM_16K, language="en"),
    "elevenlabs": SynthesizeRequest("", "21m00Tcm4TlvDq8ikWAM", PCM_16K),
}


async def silence() -> AsyncIterator[bytes]:
    for _ in range(3):
        yield b"\x00" * 3200
        await asyncio.sleep(0.01)


async def fragments() -> AsyncIterator[TextInput]:
    yield "Hello from the hub. "
    yield FLUSH


async def run(case: Case, env: Env) -> Any:
    secret, options = case.secret(env), case.options(env)
    async with asyncio.timeout(TIMEOUT * 3):  # the test's own bound, over the call's
        if case.call == "verify":
            return await registry.verify(case.provider, secret, options, timeout=TIMEOUT)
        if case.call == "stream_stt":
            stt = registry.capability(case.provider, Capability.STREAM_STT)
            assert isinstance(stt, StreamTranscriber)
            request = STT_REQUESTS.get(case.provider, StreamTranscribeRequest(PCM_16K))
            return [
                e async for e in stt.stream_transcribe(secret, options, request, silence(), timeout=TIMEOUT)
            ]
        tts = registry.capability(case.provider, Capability.STREAM_TTS_INPUT)
        assert isinstance(tts, StreamTextSynthesizer)
        request_tts = TTS_INPUT_REQUESTS[case.provider]
        stream = tts.stream_synthesize_input(secret, options, request_tts, fragments(), timeout=TIMEOUT)
        return [chunk async for chunk in stream]


def assert_refused(
    caught: BaseException, servers: Servers, secret: SecretFields | None = None, *also: str
) -> None:
    assert servers.seen_by_target == [], "a redirect was followed"
    assert servers.redirected, "the call never reached the redirector"
    assert isinstance(caught, CallerError), f"not a caller error: {type(caught).__name__}: {caught}"
    assert isinstance(caught, ProviderUnavailable), f"{type(caught).__name__}: {caught}"
    assert "redirect" in caught.message, caught.message
    assert f"HTTP {servers.status}" in caught.message, caught.message
    assert caught.provider_status == servers.status
    text = "".join(traceback.format_exception(caught)) + repr(caught)
    revealed = [secret.reveal(name) for name in secret.field_names()] if secret is not None else []
    for secret_text in (KEY, LOCATION_QUERY, *revealed, *also):
        assert secret_text not in text


async def check(case: Case, servers: Servers, private_key: rsa.RSAPrivateKey) -> None:
    env = Env(servers, private_key)
    try:
        answer = await run(case, env)
    except Exception as exc:  # classified by assert_refused
        # A line from the middle of the private key: the Google and Vonage secrets hold it.
        assert_refused(exc, servers, case.secret(env), pem_of(private_key).splitlines()[5])
    else:
        assert servers.seen_by_target == [], "a redirect was followed"
        pytest.fail(f"{case.provider} {case.call} did not fail on a redirect: {answer!r}")


@pytest.mark.parametrize("case", verify_params())
async def test_verify_refuses_redirects(
    case: Case | str, servers: Servers, private_key: rsa.RSAPrivateKey
) -> None:
    if isinstance(case, str):
        pytest.fail(f"provider {case!r} has VERIFY but no redirect case in VERIFY_CASES: add one")
    await check(case, servers, private_key)


@pytest.mark.parametrize("case", STREAM_CASES)
async def test_websocket_streams_refuse_redirects(
    case: Case, servers: Servers, private_key: rsa.RSAPrivateKey
) -> None:
    await check(case, servers, private_key)
    # The upgrade request itself reached the redirector (not some REST call before it).
    assert any(seen.headers.get("Upgrade", "").lower() == "websocket" for seen in servers.redirected)


# --- the pooled session itself ------------------------------------------------------------


async def test_pooled_session_refuses_redirects_of_requests_and_upgrades(servers: Servers) -> None:
    session = pools.aiohttp_session(servers.url)
    headers = {"X-API-Key": KEY, "xi-api-key": KEY, "api-key": KEY}
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    with pytest.raises(ProviderUnavailable) as plain:
        async with session.get(f"{servers.url}/v1/models", headers=headers, timeout=timeout):
            pass
    with pytest.raises(ProviderUnavailable) as posted:
        async with session.post(f"{servers.url}/v1/x", data=b"{}", headers=headers, timeout=timeout):
            pass
    with pytest.raises(ProviderUnavailable) as upgrade:
        async with asyncio.timeout(TIMEOUT):
            await session.ws_connect(f"{servers.url}/v1/ws", headers=headers)
    for caught in (plain, posted, upgrade):
        assert_refused(caught.value, servers)
        # The configured host and where the redirect pointed; never the Location's path.
        where = servers.target.url.removeprefix("http://")
        assert caught.value.message.startswith(
            f"127.0.0.1 answered with a redirect (HTTP {servers.status} to {where})"
        )
        assert "/v1/" not in caught.value.message
    assert [seen.path for seen in servers.redirected] == ["/v1/models", "/v1/x", "/v1/ws"]
    # The connection pool survives: the next request on the same session works.
    async with session.get(f"{servers.issuer.url}/token", timeout=timeout) as response:
        assert response.status == 200
