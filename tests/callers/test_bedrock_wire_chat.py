"""Bedrock chat and verify through the real botocore client against a local fake Bedrock.

The fake checks SigV4 signatures with botocore's signer and answers in AWS's own
error format, so these tests see what AWS would: no mock of the SDK anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from callers import registry
from callers.base import (
    AuthenticationFailed,
    CallerError,
    Capability,
    ChatCaller,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from callers.bedrock import session as bedrock_session
from callers.types import (
    AssistantMessage,
    ChatRequest,
    FinishReason,
    ImagePart,
    ResponseFormat,
    ResponseFormatKind,
    SamplingParams,
    SystemMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolResultMessage,
    UserMessage,
)
from tests.fakes.bedrock_server import AwsError, FakeBedrock, text_answer, tool_use_answer
from tests.fakes.secret_fields import PlainSecret

KEY_ID = "AKIAFAKEKEY000000001"
SECRET_KEY = "fakeSecretKey/0123456789abcdefghijklmnop"
SECRET = PlainSecret(access_key_id=KEY_ID, secret_access_key=SECRET_KEY)
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock({KEY_ID: SECRET_KEY}) as server:
        yield server


def chat_caller() -> ChatCaller:
    caller = registry.capability("bedrock", Capability.CHAT)
    assert isinstance(caller, ChatCaller)
    return caller


def hello(**fields: Any) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=[UserMessage([TextPart("Hello?")])], **fields)


async def test_text_chat_request_and_answer_on_the_wire(fake: FakeBedrock) -> None:
    fake.converse_answers.append(text_answer("Bonjour !", input_tokens=20, output_tokens=4, cache_read=100))
    request = ChatRequest(
        model=MODEL,
        messages=[SystemMessage("Answer in French."), UserMessage([TextPart("Hello?")])],
        sampling=SamplingParams(temperature=0.3, top_p=0.8, max_output_tokens=50, stop=["\n\n"]),
        provider_options={"top_k": 40},
    )
    result = await chat_caller().chat(SECRET, fake.options(), request, timeout=5)

    assert result.message == AssistantMessage("Bonjour !")
    assert result.finish_reason is FinishReason.STOP
    assert (result.usage.input_tokens, result.usage.cached_input_tokens) == (120, 100)
    assert (result.usage.output_tokens, result.usage.total_tokens) == (4, 124)
    assert result.model == MODEL
    [sent] = fake.requests
    assert result.request_id is not None
    assert len(result.request_id) == 36  # x-amzn-RequestId, a UUID
    assert (sent.method, sent.raw_path) == (
        "POST",
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
    )
    assert sent.json() == {
        "messages": [{"role": "user", "content": [{"text": "Hello?"}]}],
        "system": [{"text": "Answer in French."}],
        "inferenceConfig": {"maxTokens": 50, "temperature": 0.3, "topP": 0.8, "stopSequences": ["\n\n"]},
        "additionalModelRequestFields": {"top_k": 40},
    }
    authorization = sent.headers["Authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert "/us-east-1/bedrock/aws4_request" in authorization
    assert SECRET_KEY not in authorization


async def test_tool_call_round_trip(fake: FakeBedrock) -> None:
    weather = Tool(
        "get_weather",
        "Current weather in a city",
        {"type": "object", "properties": {"city": {"type": "string"}}},
    )
    fake.converse_answers += [
        tool_use_answer("tooluse_abc", "get_weather", {"city": "Paris"}, text="Let me check."),
        text_answer("It is 18C in Paris."),
    ]
    first = await chat_caller().chat(SECRET, fake.options(), hello(tools=[weather]), timeout=5)
    assert first.finish_reason is FinishReason.TOOL_CALLS
    assert first.message == AssistantMessage(
        "Let me check.", [ToolCall("tooluse_abc", "get_weather", '{"city": "Paris"}')]
    )

    follow_up = hello(tools=[weather])
    follow_up.messages += [first.message, ToolResultMessage("tooluse_abc", "18C, sunny")]
    final = await chat_caller().chat(SECRET, fake.options(), follow_up, timeout=5)
    assert final.message.text == "It is 18C in Paris."
    assert final.finish_reason is FinishReason.STOP

    sent = fake.requests[-1].json()
    assert sent["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Current weather in a city",
                    "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
                }
            }
        ],
        "toolChoice": {"auto": {}},
    }
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tooluse_abc", "name": "get_weather", "input": {"city": "Paris"}}},
            ],
        },
        {
            "role": "user",
            "content": [{"toolResult": {"toolUseId": "tooluse_abc", "content": [{"text": "18C, sunny"}]}}],
        },
    ]


async def test_image_bytes_travel_base64_encoded(fake: FakeBedrock) -> None:
    image = ImagePart(data=b"\x89PNG\r\n\x1a\n-not-really", media_type="image/png")
    request = ChatRequest(model=MODEL, messages=[UserMessage([TextPart("What is this?"), image])])
    await chat_caller().chat(SECRET, fake.options(), request, timeout=5)
    block = fake.requests[0].json()["messages"][0]["content"][1]
    assert block == {
        "image": {"format": "png", "source": {"bytes": base64.b64encode(image.data or b"").decode()}}
    }


async def test_json_schema_goes_as_output_config_and_json_mode_is_refused(fake: FakeBedrock) -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fake.converse_answers.append(text_answer('{"n": 3}'))
    await chat_caller().chat(
        SECRET,
        fake.options(),
        hello(response_format=ResponseFormat(ResponseFormatKind.JSON_SCHEMA, "count", schema)),
        timeout=5,
    )
    text_format = fake.requests[0].json()["outputConfig"]["textFormat"]
    assert text_format["type"] == "json_schema"
    assert text_format["structure"]["jsonSchema"]["name"] == "count"
    with pytest.raises(InvalidRequest, match="only with a JSON schema"):
        await chat_caller().chat(
            SECRET,
            fake.options(),
            hello(response_format=ResponseFormat(ResponseFormatKind.JSON_OBJECT)),
            timeout=5,
        )
    assert len(fake.requests) == 1  # refused before anything was sent


async def test_session_token_is_sent_and_signed(fake: FakeBedrock) -> None:
    fake.credentials = {"ASIATEMPORARY0000001": "temp-secret"}
    fake.session_tokens = {"ASIATEMPORARY0000001": "session-token-value"}
    secret = PlainSecret(
        access_key_id="ASIATEMPORARY0000001",
        secret_access_key="temp-secret",
        session_token="session-token-value",
    )
    await chat_caller().chat(secret, fake.options(), hello(), timeout=5)
    sent = fake.requests[0]
    assert sent.headers["X-Amz-Security-Token"] == "session-token-value"
    assert "x-amz-security-token" in sent.headers["Authorization"]  # among the signed headers


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (
            PlainSecret(access_key_id="AKIAUNKNOWN000000000", secret_access_key=SECRET_KEY),
            "security token included",
        ),
        (PlainSecret(access_key_id=KEY_ID, secret_access_key="wrong-secret"), "signature we calculated"),
    ],
)
async def test_rejected_keys_fail_authentication(
    fake: FakeBedrock, secret: PlainSecret, message: str
) -> None:
    # AWS answers 403 for a key it does not know and for a wrong secret: still "bad key".
    with pytest.raises(AuthenticationFailed, match=message) as caught:
        await chat_caller().chat(secret, fake.options(), hello(), timeout=5)
    assert caught.value.provider_status == 403
    assert "wrong-secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            AwsError(403, "AccessDeniedException", "User: arn:aws:iam::1:user/x is not authorized"),
            PermissionDenied,
        ),
        (AwsError(404, "ResourceNotFoundException", "Model not found."), NotFound),
        (AwsError(400, "ValidationException", "The provided model identifier is invalid."), InvalidRequest),
        (
            AwsError(503, "ServiceUnavailableException", "Bedrock is unable to process your request."),
            ProviderUnavailable,
        ),
        (
            AwsError(500, "InternalServerException", "The server encountered an internal error."),
            ProviderUnavailable,
        ),
        (AwsError(424, "ModelErrorException", "The model failed."), ProviderUnavailable),
        (
            AwsError(429, "ModelNotReadyException", "The model is not ready to serve requests."),
            ProviderUnavailable,
        ),
        (
            AwsError(408, "ModelTimeoutException", "Model has timed out in processing the request."),
            ProviderTimeout,
        ),
    ],
)
async def test_aws_errors_are_classified(
    fake: FakeBedrock, error: AwsError, expected: type[CallerError]
) -> None:
    fake.force_error = error
    with pytest.raises(expected) as caught:
        await chat_caller().chat(SECRET, fake.options(), hello(), timeout=5)
    assert type(caught.value) is expected
    assert caught.value.message == error.message
    assert caught.value.provider_status == error.status
    # botocore's exception (it holds the signed request) is not chained.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True
    assert len(fake.requests) == 1  # no SDK retries: the hub owns them


async def test_throttling_is_rate_limited_with_retry_after(fake: FakeBedrock) -> None:
    fake.force_error = AwsError(
        429, "ThrottlingException", "Too many requests, please wait.", {"Retry-After": "3"}
    )
    with pytest.raises(RateLimited) as caught:
        await chat_caller().chat(SECRET, fake.options(), hello(), timeout=5)
    assert caught.value.retry_after == 3.0
    assert caught.value.provider_status == 429
    assert len(fake.requests) == 1


async def test_connection_refused_is_provider_unavailable(refused_base_url: str) -> None:
    endpoint = refused_base_url.removesuffix("/v1")
    with pytest.raises(ProviderUnavailable, match=r"could not reach 127\.0\.0\.1"):
        await chat_caller().chat(
            SECRET, {"region": "us-east-1", "endpoint_url": endpoint}, hello(), timeout=5
        )


async def test_timeout_raises_and_closes_the_connection(fake: FakeBedrock) -> None:
    fake.hang = True
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match="did not answer within the timeout"):
        await chat_caller().chat(SECRET, fake.options(), hello(), timeout=0.4)
    assert time.monotonic() - started < 1.5
    await fake.wait_for_disconnect(timeout=1)


async def test_cancel_closes_the_upstream_connection_promptly(fake: FakeBedrock) -> None:
    fake.hang = True
    task = asyncio.create_task(chat_caller().chat(SECRET, fake.options(), hello(), timeout=30))
    await fake.wait_for_request()
    await asyncio.sleep(0.05)  # the worker thread is now blocked reading the answer
    cancelled_at = asyncio.get_running_loop().time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    disconnected_at = await fake.wait_for_disconnect(timeout=1)
    assert disconnected_at - cancelled_at < 0.1


async def test_hub_environment_and_aws_files_are_never_consulted(
    fake: FakeBedrock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.write_text("[default]\nregion = eu-west-3\nendpoint_url = http://127.0.0.1:9\nmax_attempts = 5\n")
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = AKIAFROMFILE\naws_secret_access_key = file-secret\n"
    )
    for name, value in {
        "AWS_ACCESS_KEY_ID": "AKIAFROMENVIRONMENT",
        "AWS_SECRET_ACCESS_KEY": "environment-secret",
        "AWS_SESSION_TOKEN": "environment-token",
        "AWS_BEARER_TOKEN_BEDROCK": "environment-bearer-token",
        "AWS_REGION": "ap-south-1",
        "AWS_DEFAULT_REGION": "ap-south-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://127.0.0.1:9",
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        "AWS_PROFILE": "no-such-profile",  # reading it would even raise ProfileNotFound
        "AWS_MAX_ATTEMPTS": "5",
        "AWS_RETRY_MODE": "adaptive",
        "AWS_CA_BUNDLE": str(tmp_path / "missing.pem"),
        "AWS_DATA_PATH": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    # A botocore "experimental client plugin" would be imported into every client.
    (tmp_path / "env_plugin.py").write_text(
        "LOADED = []\ndef initialize_client_plugin(client):\n    LOADED.append(client)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BOTOCORE_EXPERIMENTAL__PLUGINS", "spy=env_plugin")
    monkeypatch.setattr(bedrock_session, "_session", None)  # built afresh under this environment

    await chat_caller().chat(SECRET, fake.options(), hello(), timeout=5)
    sent = fake.requests[0].headers
    assert sent["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert "/us-east-1/bedrock/" in sent["Authorization"]
    assert "X-Amz-Security-Token" not in sent

    fake.force_error = AwsError(503, "ServiceUnavailableException", "busy")
    with pytest.raises(ProviderUnavailable):
        await chat_caller().chat(SECRET, fake.options(), hello(), timeout=5)
    assert len(fake.requests) == 2  # AWS_MAX_ATTEMPTS=5 ignored: one attempt
    import env_plugin  # type: ignore[import-not-found]

    assert env_plugin.LOADED == []


async def test_verify_valid_key_lists_models(fake: FakeBedrock) -> None:
    result = await registry.verify("bedrock", SECRET, fake.options(), timeout=5)
    assert result.valid is True
    assert result.reason == "ok"
    assert result.detail == {"models": "2", "region": "us-east-1"}
    [sent] = fake.requests
    assert (sent.method, sent.path) == ("GET", "/foundation-models")
    assert sent.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")


async def test_verify_rejections_are_answers(fake: FakeBedrock) -> None:
    unknown = PlainSecret(access_key_id="AKIAUNKNOWN000000000", secret_access_key="x")
    result = await registry.verify("bedrock", unknown, fake.options(), timeout=5)
    assert result.valid is False
    assert (
        result.reason
        == "provider rejected the key (403): The security token included in the request is invalid."
    )

    fake.force_error = AwsError(
        403, "AccessDeniedException", "User is not authorized to perform: bedrock:ListFoundationModels"
    )
    result = await registry.verify("bedrock", SECRET, fake.options(), timeout=5)
    assert result.valid is False
    assert result.reason.startswith("provider rejected the key (403): User is not authorized")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (AwsError(429, "ThrottlingException", "Rate exceeded"), RateLimited),
        (AwsError(500, "InternalServerException", "oops"), ProviderUnavailable),
    ],
)
async def test_verify_cannot_tell_raises(
    fake: FakeBedrock, error: AwsError, expected: type[CallerError]
) -> None:
    fake.force_error = error
    with pytest.raises(expected):
        await registry.verify("bedrock", SECRET, fake.options(), timeout=5)


async def test_verify_timeout(fake: FakeBedrock) -> None:
    fake.hang = True
    with pytest.raises(ProviderTimeout):
        await registry.verify("bedrock", SECRET, fake.options(), timeout=0.3)


def _self_signed_server_context(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


async def test_tls_certificates_are_verified(tmp_path: Path) -> None:
    # Our transport does the TLS itself; an untrusted certificate must stop the call.
    async with FakeBedrock({KEY_ID: SECRET_KEY}, ssl_context=_self_signed_server_context(tmp_path)) as server:
        assert server.url.startswith("https://")
        with pytest.raises(ProviderUnavailable, match=r"could not reach 127\.0\.0\.1 \(SSLError\)"):
            await chat_caller().chat(SECRET, server.options(), hello(), timeout=5)
        assert server.requests == []
