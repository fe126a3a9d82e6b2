"""Every implemented provider, through the hub, on every transport.

One `ProviderCase` per provider says how to start its fake (a real server on loopback
speaking the provider's wire protocol), what credential points the caller at it, and
how to script a text answer, a tool call and a 429. The tests are parametrized over
the cases; which cases a test runs on comes from the provider's SPEC (its
capabilities), so a provider that gains a capability is tested for it at once, and
`test_every_implemented_provider_has_a_case` fails until a new provider has its row.

Each test starts its own hub (SQLite only: the store backends are covered elsewhere)
and its own fake, stores the credential through CredentialService (so it is sealed
and opened like any other), and calls through gRPC, REST or the OpenAI-compatible
endpoint with the official `openai` SDK as the client.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2, status_pb2

from callers import registry
from callers.base import Capability
from integration_hub.v1 import chat_pb2 as pb
from integration_hub.v1 import chat_pb2_grpc
from integration_hub.v1 import credentials_pb2 as cpb
from tests.fakes.anthropic_server import FakeAnthropic, message, text_block, tool_use_block
from tests.fakes.bedrock_server import (
    AwsError,
    FakeBedrock,
    text_answer,
    text_stream,
    tool_stream,
    tool_use_answer,
)
from tests.fakes.cohere_server import CohereReply, FakeCohere
from tests.fakes.gemini_server import FakeGoogle, function_call_part, generate_response, text_part
from tests.fakes.mistral_server import FakeMistral, MistralReply
from tests.fakes.openai_server import ChatReply, FakeOpenAI, FakeToolCall
from tests.fakes.replicate_server import LLAMA, FakeReplicate
from tests.fakes.voyage_server import FakeVoyage
from tests.harness import HubUnderTest, running_hub, settings_for

Fake = Any  # each provider's fake is its own class; a case's functions know which
Json = dict[str, Any]

GRPC_TIMEOUT = 15.0
TEXT = "Bonjour from the provider matrix."
FINAL_TEXT = "It is 18C and sunny in Paris."
TOOL_ARGS = {"city": "Paris"}
TOOL_RESULT = '{"temperature_c": 18, "sky": "sunny"}'
WEATHER_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL: Json = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": WEATHER_PARAMETERS,
    },
}
EMBED_INPUTS = ["alpha text", "beta text", "gamma text"]
RERANK_QUERY = "weather in paris"
RERANK_DOCUMENTS = ["stock prices fell", "the weather in paris is sunny", "paris museums", "rain in oslo"]
RETRY_SECONDS = 7


@dataclass(frozen=True)
class Tokens:
    """Usage as the hub reports it: input includes the cached part; total = input + output."""

    input: int = 21
    output: int = 5
    cached: int = 8

    @property
    def total(self) -> int:
        return self.input + self.output

    @property
    def uncached(self) -> int:
        return self.input - self.cached


USAGE = Tokens()


# --- the cases ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ProviderCase:
    """How to exercise one provider through the hub against its fake."""

    provider: str
    start: Callable[[], AbstractAsyncContextManager[Any]]  # the fake, as an async context manager
    secret: Callable[[Fake], dict[str, str]]
    wrong_secret: Callable[[Fake], dict[str, str]]  # a key the fake refuses
    options: Callable[[Fake], dict[str, str]]
    force_429: Callable[[Fake], None]  # every later request gets a 429
    retry_after: int | None = RETRY_SECONDS  # what the 429 tells to wait, where the provider says it
    # chat (CHAT / STREAM_CHAT)
    chat_model: str = ""
    # fake, text, usage: the provider answers `text` and reports `usage` in its own convention
    script_text: Callable[[Fake, str, Tokens], None] | None = None
    caches_prompts: bool = True  # reports cached input tokens (else usage.cached is 0)
    # tool calls: script a call of get_weather(TOOL_ARGS); check the follow-up request on the wire
    script_tool_call: Callable[[Fake, str, Json], None] | None = None  # fake, tool name, arguments
    check_tool_result: Callable[[Fake, str, str], None] | None = None  # fake, call id, result
    # EMBED
    embed_model: str = ""
    embed_dimensions: int | None = None  # asked for; None: the model's own size
    embed_size: int = 0  # the vector size expected back
    embed_input_type: str | None = None  # "query" / "document", where the provider needs one
    # RERANK
    rerank_model: str = ""
    # Known bugs: check name -> reason; the test is marked xfail(strict=True) for this case.
    xfail: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.provider

    @property
    def capabilities(self) -> frozenset[Capability]:
        return registry.spec(self.provider).capabilities


def words(text: str) -> list[str]:
    """`text` as streamed tokens: each word with its leading space."""
    pieces = text.split(" ")
    return [pieces[0]] + [" " + piece for piece in pieces[1:]]


# OpenAI's wire: openai, azure_openai, openrouter, openai_compatible, huggingface (all FakeOpenAI).

OPENAI_KEY = "sk-test-Matrix0123456789abcdefghij"
TOOL_CALL_ID = "call_Matrix0001"


def openai_script_text(fake: FakeOpenAI, text: str, usage: Tokens) -> None:
    # prompt_tokens counts the cached ones too; prompt_tokens_details.cached_tokens says how many.
    fake.script(
        ChatReply(
            text=text, prompt_tokens=usage.input, completion_tokens=usage.output, cached_tokens=usage.cached
        )
    )


def openai_script_tool_call(fake: FakeOpenAI, name: str, arguments: Json) -> None:
    fake.script(ChatReply(text=None, tool_calls=[FakeToolCall(name, json.dumps(arguments), id=TOOL_CALL_ID)]))


def openai_check_tool_result(fake: FakeOpenAI, call_id: str, result: str) -> None:
    sent = fake.requests[-1]
    assert sent.path.endswith("/chat/completions")
    body = sent.json()
    user, assistant, tool = body["messages"]
    assert user["role"] == "user"
    assert assistant["role"] == "assistant"
    [call] = assistant["tool_calls"]
    assert (call["id"], call["type"], call["function"]["name"]) == (call_id, "function", "get_weather")
    assert json.loads(call["function"]["arguments"]) == TOOL_ARGS
    assert tool == {"role": "tool", "tool_call_id": call_id, "content": result}
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["tools"][0]["function"]["parameters"] == WEATHER_PARAMETERS


def openai_force_429(fake: FakeOpenAI) -> None:
    fake.force_status, fake.retry_after = 429, str(RETRY_SECONDS)


def openai_wire_case(
    provider: str, options: Callable[[FakeOpenAI], dict[str, str]], **kw: Any
) -> ProviderCase:
    return ProviderCase(
        provider=provider,
        start=lambda: FakeOpenAI(valid_keys={OPENAI_KEY}),
        secret=lambda fake: {"api_key": OPENAI_KEY},
        wrong_secret=lambda fake: {"api_key": "sk-test-WrongKey0123456789abcdefgh"},
        options=options,
        force_429=openai_force_429,
        script_text=openai_script_text,
        script_tool_call=openai_script_tool_call,
        check_tool_result=openai_check_tool_result,
        **kw,
    )


# Anthropic

ANTHROPIC_KEY = "sk-ant-api03-Matrix0123456789abcdef"
TOOL_USE_ID = "toolu_01MatrixMatrixMatrix"


def anthropic_script_text(fake: FakeAnthropic, text: str, usage: Tokens) -> None:
    # Anthropic's input_tokens leaves out cache reads (cache_read_input_tokens).
    fake.replies.append(
        message(
            [text_block(text)],
            input_tokens=usage.uncached,
            output_tokens=usage.output,
            cache_read=usage.cached,
            cache_creation=0,
        )
    )


def anthropic_script_tool_call(fake: FakeAnthropic, name: str, arguments: Json) -> None:
    fake.replies.append(message([tool_use_block(TOOL_USE_ID, name, arguments)], stop_reason="tool_use"))


def anthropic_check_tool_result(fake: FakeAnthropic, call_id: str, result: str) -> None:
    sent = fake.requests[-1]
    assert sent.path == "/v1/messages"
    body = sent.json
    user, assistant, answer = body["messages"]
    assert user["role"] == "user"
    assert assistant == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": call_id, "name": "get_weather", "input": TOOL_ARGS}],
    }
    assert answer == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call_id, "content": result}],
    }
    assert body["tools"][0]["name"] == "get_weather"
    assert body["tools"][0]["input_schema"] == WEATHER_PARAMETERS


def anthropic_force_429(fake: FakeAnthropic) -> None:
    fake.force_status, fake.retry_after = 429, str(RETRY_SECONDS)


# Google: Gemini API (API key) and Vertex AI (service account), one fake.

GEMINI_KEY = "AIzaSyMatrix0123456789abcdefghijklmnop"
VERTEX_EMAIL = "integration-hub@fake-project.iam.gserviceaccount.com"
VERTEX_PROJECT, VERTEX_LOCATION = "fake-project", "us-central1"


@functools.cache
def service_account_key(which: str) -> rsa.RSAPrivateKey:
    """A real RSA key per name ("good" is the one the fake knows), made once per run."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account_json(fake: FakeGoogle, which: str) -> dict[str, str]:
    pem = (
        service_account_key(which)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    document = {
        "type": "service_account",
        "project_id": VERTEX_PROJECT,
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem,
        "client_email": VERTEX_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": fake.token_uri,
    }
    return {"service_account_json": json.dumps(document)}


def google_script_text(fake: FakeGoogle, text: str, usage: Tokens) -> None:
    # promptTokenCount includes cachedContentTokenCount.
    fake.replies.append(
        generate_response(
            [text_part(text)],
            prompt_tokens=usage.input,
            output_tokens=usage.output,
            cached_tokens=usage.cached,
        )
    )


def google_script_tool_call(fake: FakeGoogle, name: str, arguments: Json) -> None:
    # As Gemini usually answers: no id on the call (the hub makes one), finishReason STOP.
    fake.replies.append(generate_response([function_call_part(name, arguments)]))


def google_check_tool_result(fake: FakeGoogle, call_id: str, result: str) -> None:
    sent = fake.requests[-1]
    assert sent.path.endswith(":generateContent")
    body = sent.json
    user, model, answer = body["contents"]
    assert user["role"] == "user"
    assert model["role"] == "model"
    [call] = model["parts"]
    assert call["functionCall"]["name"] == "get_weather"
    assert call["functionCall"]["args"] == TOOL_ARGS
    assert "id" not in call["functionCall"]  # the hub's synthetic id is not Gemini's
    assert answer["role"] == "user"
    # The result is JSON, so it goes as an object under "output", as Google documents.
    assert answer["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"output": json.loads(result)}}}
    ]
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"


def google_force_429(fake: FakeGoogle) -> None:
    # Google says how long to wait in the error's RetryInfo, not in a Retry-After header.
    fake.force_status, fake.retry_delay = 429, f"{RETRY_SECONDS}s"


def vertex_fake() -> FakeGoogle:
    public = service_account_key("good").public_key()
    return FakeGoogle(
        service_accounts={VERTEX_EMAIL: public}, project=VERTEX_PROJECT, location=VERTEX_LOCATION
    )


# Amazon Bedrock

AWS_KEY_ID = "AKIAMATRIXFAKE000001"
AWS_SECRET = "matrixSecretKey/0123456789abcdefghijklmn"
TOOL_USE_ID_BEDROCK = "tooluse_MatrixMatrix01"


def bedrock_script_text(fake: FakeBedrock, text: str, usage: Tokens) -> None:
    # Converse's inputTokens leaves out cacheReadInputTokens; totalTokens has all of them.
    counts = {"input_tokens": usage.uncached, "output_tokens": usage.output, "cache_read": usage.cached}
    fake.converse_answers.append(text_answer(text, **counts))
    fake.stream_events = text_stream(*words(text), **counts)


def bedrock_script_tool_call(fake: FakeBedrock, name: str, arguments: Json) -> None:
    fake.converse_answers.append(tool_use_answer(TOOL_USE_ID_BEDROCK, name, arguments))
    encoded = json.dumps(arguments)
    fake.stream_events = tool_stream(TOOL_USE_ID_BEDROCK, name, [encoded[:5], encoded[5:]])


def bedrock_check_tool_result(fake: FakeBedrock, call_id: str, result: str) -> None:
    sent = fake.requests[-1]
    assert sent.path.endswith("/converse")
    body = sent.json()
    user, assistant, answer = body["messages"]
    assert user["role"] == "user"
    assert assistant == {
        "role": "assistant",
        "content": [{"toolUse": {"toolUseId": call_id, "name": "get_weather", "input": TOOL_ARGS}}],
    }
    assert answer == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": call_id, "content": [{"text": result}]}}],
    }
    spec = body["toolConfig"]["tools"][0]["toolSpec"]
    assert (spec["name"], spec["inputSchema"]) == ("get_weather", {"json": WEATHER_PARAMETERS})


def bedrock_force_429(fake: FakeBedrock) -> None:
    # Bedrock sends no Retry-After with its throttling errors.
    fake.force_error = AwsError(
        429, "ThrottlingException", "Too many requests, please wait before trying again."
    )


# Cohere

COHERE_KEY = "co-Matrix0123456789abcdefghijklmnopqrstu"
COHERE_CALL_ID = "get_weather_mx1"


def cohere_script_text(fake: FakeCohere, text: str, usage: Tokens) -> None:
    fake.replies.append(
        CohereReply(
            text=text, input_tokens=usage.input, output_tokens=usage.output, cached_tokens=usage.cached
        )
    )


def cohere_script_tool_call(fake: FakeCohere, name: str, arguments: Json) -> None:
    fake.replies.append(
        CohereReply(
            tool_plan="I will look up the weather.",
            tool_calls=[(COHERE_CALL_ID, name, json.dumps(arguments))],
            finish_reason="TOOL_CALL",
        )
    )


def cohere_check_tool_result(fake: FakeCohere, call_id: str, result: str) -> None:
    sent = fake.requests[-1]
    assert sent.path == "/v2/chat"
    body = sent.json
    user, assistant, tool = body["messages"]
    assert user["role"] == "user"
    assert assistant["role"] == "assistant"
    assert assistant["tool_plan"] == "I will look up the weather."
    [call] = assistant["tool_calls"]
    assert (call["id"], call["function"]["name"]) == (call_id, "get_weather")
    assert json.loads(call["function"]["arguments"]) == TOOL_ARGS
    assert tool == {"role": "tool", "tool_call_id": call_id, "content": result}
    assert body["tools"][0]["function"]["name"] == "get_weather"


def cohere_force_429(fake: FakeCohere) -> None:
    fake.force_status, fake.retry_after = 429, str(RETRY_SECONDS)


# Mistral

MISTRAL_KEY = "MatrixMistralKey0123456789abcdef"
MISTRAL_CALL_ID = "wthrPrs01"  # Mistral's ids are 9 letters and digits


def mistral_script_text(fake: FakeMistral, text: str, usage: Tokens) -> None:
    fake.replies.append(
        MistralReply(
            text=text,
            prompt_tokens=usage.input,
            completion_tokens=usage.output,
            cached_tokens=usage.cached,
        )
    )


def mistral_script_tool_call(fake: FakeMistral, name: str, arguments: Json) -> None:
    fake.replies.append(
        MistralReply(tool_calls=[(MISTRAL_CALL_ID, name, json.dumps(arguments))], finish_reason="tool_calls")
    )


def mistral_check_tool_result(fake: FakeMistral, call_id: str, result: str) -> None:
    sent = fake.requests[-1]
    assert sent.path == "/v1/chat/completions"
    body = sent.json
    user, assistant, tool = body["messages"]
    assert user["role"] == "user"
    [call] = assistant["tool_calls"]
    assert (call["id"], call["function"]["name"]) == (call_id, "get_weather")
    assert tool == {"role": "tool", "tool_call_id": call_id, "content": result, "name": "get_weather"}
    assert body["tools"][0]["function"]["name"] == "get_weather"


def mistral_force_429(fake: FakeMistral) -> None:
    fake.force_status, fake.retry_after = 429, str(RETRY_SECONDS)


# Replicate (no tools)

REPLICATE_TOKEN = "r8_Matrix0123456789abcdefghijklmnopqrstu"


def replicate_script_text(fake: FakeReplicate, text: str, usage: Tokens) -> None:
    fake.output = words(text)  # Replicate has no prompt cache
    fake.metrics = {"input_token_count": usage.input, "output_token_count": usage.output, "predict_time": 0.1}


def replicate_force_429(fake: FakeReplicate) -> None:
    fake.force_status, fake.retry_after = 429, str(RETRY_SECONDS)


# Voyage AI (embeddings and rerank only)

VOYAGE_KEY = "pa-Matrix0123456789abcdefghijklmnopqrstuv"


def voyage_force_429(fake: FakeVoyage) -> None:
    fake.force_status, fake.retry_after = 429, str(RETRY_SECONDS)


CASES: list[ProviderCase] = [
    openai_wire_case(
        "openai",
        lambda fake: {"base_url": fake.base_url},
        chat_model="gpt-4o-mini",
        embed_model="text-embedding-3-small",
        embed_dimensions=16,
        embed_size=16,
    ),
    openai_wire_case(
        "azure_openai",
        lambda fake: {"endpoint": fake.azure_endpoint},
        chat_model="gpt-4o",  # the deployment, named by the request's model
        embed_model="text-embedding-3-small",
        embed_dimensions=16,
        embed_size=16,
    ),
    openai_wire_case(
        "openrouter",
        lambda fake: {"base_url": fake.base_url, "app_title": "integration-hub tests"},
        chat_model="anthropic/claude-sonnet-4.5",  # a slash in the model, after the credential's
        embed_model="openai/text-embedding-3-small",
        embed_dimensions=16,
        embed_size=16,
    ),
    openai_wire_case(
        "openai_compatible",
        lambda fake: {"base_url": fake.base_url},
        chat_model="llama3.1:8b",
        embed_model="bge-m3",
        embed_size=8,  # the fake's default size
    ),
    openai_wire_case(
        "huggingface",
        # A dedicated server (TGI/TEI) configured by its root: chat on /v1, TEI's /embed, /info.
        lambda fake: {"base_url": fake.url},
        chat_model="meta-llama/Llama-3.1-8B-Instruct",
        embed_model="BAAI/bge-small-en-v1.5",
        embed_size=8,
    ),
    ProviderCase(
        provider="anthropic",
        start=lambda: FakeAnthropic(valid_keys={ANTHROPIC_KEY}),
        secret=lambda fake: {"api_key": ANTHROPIC_KEY},
        wrong_secret=lambda fake: {"api_key": "sk-ant-api03-Wrong0123456789abcdef"},
        options=lambda fake: {"base_url": fake.url},
        force_429=anthropic_force_429,
        chat_model="claude-sonnet-4-6",
        script_text=anthropic_script_text,
        script_tool_call=anthropic_script_tool_call,
        check_tool_result=anthropic_check_tool_result,
    ),
    ProviderCase(
        provider="gemini",
        start=lambda: FakeGoogle(api_keys={GEMINI_KEY}),
        secret=lambda fake: {"api_key": GEMINI_KEY},
        wrong_secret=lambda fake: {"api_key": "AIzaSyWrong0123456789abcdefghijklmnopq"},
        options=lambda fake: {"base_url": fake.url},
        force_429=google_force_429,
        chat_model="gemini-2.5-flash",
        script_text=google_script_text,
        script_tool_call=google_script_tool_call,
        check_tool_result=google_check_tool_result,
        embed_model="gemini-embedding-001",
        embed_dimensions=16,
        embed_size=16,
    ),
    ProviderCase(
        provider="vertex_ai",
        start=vertex_fake,
        secret=lambda fake: service_account_json(fake, "good"),
        wrong_secret=lambda fake: service_account_json(fake, "unknown"),  # a key Google never issued
        options=lambda fake: {"project": VERTEX_PROJECT, "location": VERTEX_LOCATION, "base_url": fake.url},
        force_429=google_force_429,
        chat_model="gemini-2.5-flash",
        script_text=google_script_text,
        script_tool_call=google_script_tool_call,
        check_tool_result=google_check_tool_result,
        embed_model="text-embedding-005",  # :predict (gemini-embedding-* take :batchEmbedContents)
        embed_dimensions=16,
        embed_size=16,
    ),
    ProviderCase(
        provider="bedrock",
        start=lambda: FakeBedrock({AWS_KEY_ID: AWS_SECRET}),
        secret=lambda fake: {"access_key_id": AWS_KEY_ID, "secret_access_key": AWS_SECRET},
        wrong_secret=lambda fake: {
            "access_key_id": AWS_KEY_ID,
            "secret_access_key": "wrongSecretKey/0123456789abcdefghijklmn",
        },
        options=lambda fake: fake.options(),
        force_429=bedrock_force_429,
        retry_after=None,
        chat_model="amazon.nova-micro-v1:0",
        script_text=bedrock_script_text,
        script_tool_call=bedrock_script_tool_call,
        check_tool_result=bedrock_check_tool_result,
        embed_model="amazon.titan-embed-text-v2:0",
        embed_dimensions=256,
        embed_size=256,
    ),
    ProviderCase(
        provider="cohere",
        start=lambda: FakeCohere(valid_keys={COHERE_KEY}),
        secret=lambda fake: {"api_key": COHERE_KEY},
        wrong_secret=lambda fake: {"api_key": "co-Wrong0123456789abcdefghijklmnopqrstu"},
        options=lambda fake: {"base_url": fake.base_url},
        force_429=cohere_force_429,
        chat_model="command-a-03-2025",
        script_text=cohere_script_text,
        script_tool_call=cohere_script_tool_call,
        check_tool_result=cohere_check_tool_result,
        embed_model="embed-v4.0",
        embed_dimensions=256,
        embed_size=256,
        embed_input_type="document",
        rerank_model="rerank-v3.5",
    ),
    ProviderCase(
        provider="mistral",
        start=lambda: FakeMistral(valid_keys={MISTRAL_KEY}),
        secret=lambda fake: {"api_key": MISTRAL_KEY},
        wrong_secret=lambda fake: {"api_key": "WrongMistralKey0123456789abcdef"},
        options=lambda fake: {"base_url": fake.base_url},
        force_429=mistral_force_429,
        chat_model="mistral-small-latest",
        script_text=mistral_script_text,
        script_tool_call=mistral_script_tool_call,
        check_tool_result=mistral_check_tool_result,
        embed_model="mistral-embed",
        embed_size=1024,  # mistral-embed's fixed size
    ),
    ProviderCase(
        provider="replicate",
        start=lambda: FakeReplicate(valid_tokens={REPLICATE_TOKEN}),
        secret=lambda fake: {"api_token": REPLICATE_TOKEN},
        wrong_secret=lambda fake: {"api_token": "r8_Wrong0123456789abcdefghijklmnopqrstu"},
        options=lambda fake: {"base_url": fake.base_url},
        force_429=replicate_force_429,
        chat_model=LLAMA,
        script_text=replicate_script_text,
        caches_prompts=False,
    ),
    ProviderCase(
        provider="voyageai",
        start=lambda: FakeVoyage(valid_keys={VOYAGE_KEY}),
        secret=lambda fake: {"api_key": VOYAGE_KEY},
        wrong_secret=lambda fake: {"api_key": "pa-Wrong0123456789abcdefghijklmnopqrstuv"},
        options=lambda fake: {"base_url": fake.base_url},
        force_429=voyage_force_429,
        embed_model="voyage-3.5",
        embed_dimensions=256,
        embed_size=256,
        embed_input_type="query",
        rerank_model="rerank-2.5",
    ),
]


def cases(check: str, *needs: Capability) -> list[Any]:
    """The cases whose provider has every capability in `needs`, with their known bugs marked."""
    chosen = []
    for case in CASES:
        if not set(needs) <= case.capabilities:
            continue
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail[check])] if check in case.xfail else []
        chosen.append(pytest.param(case, id=case.provider, marks=marks))
    return chosen


# --- the hub, the fake and the stored credential ------------------------------------------


@dataclass
class Env:
    case: ProviderCase
    fake: Fake
    hut: HubUnderTest

    @property
    def credential(self) -> str:
        return self.case.provider  # the credential's name

    @property
    def md(self) -> list[tuple[str, str]]:
        return self.hut.auth(self.hut.tokens.invoke_only)

    @property
    def admin(self) -> list[tuple[str, str]]:
        return self.hut.auth(self.hut.tokens.admin)

    def chat(self) -> chat_pb2_grpc.ChatServiceStub:
        return chat_pb2_grpc.ChatServiceStub(self.hut.channel)

    def sdk(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.hut.http_base + "/openai/v1", api_key=self.hut.tokens.invoke_only, max_retries=0
        )

    def sdk_model(self, model: str) -> str:
        return f"{self.credential}/{model}"

    def script_text(self, text: str = TEXT) -> None:
        assert self.case.script_text is not None
        self.case.script_text(self.fake, text, USAGE)

    @property
    def expected_usage(self) -> tuple[int, int, int, int]:
        """(input, output, cached, total) as the hub should report the scripted usage."""
        cached = USAGE.cached if self.case.caches_prompts else 0
        return (USAGE.input, USAGE.output, cached, USAGE.total)

    async def store(self, name: str, secret: dict[str, str]) -> cpb.Credential:
        created = await self.hut.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(
                provider=self.case.provider, name=name, secret=secret, options=self.case.options(self.fake)
            ),
            metadata=self.admin,
            timeout=GRPC_TIMEOUT,
        )
        return created.credential


@contextlib.asynccontextmanager
async def provider_env(case: ProviderCase, tmp_path: Path) -> AsyncIterator[Env]:
    """A fresh hub on SQLite, the provider's fake, and a stored credential pointing at it."""
    async with case.start() as fake, running_hub(settings_for(tmp_path, database_url=None)) as hut:
        env = Env(case, fake, hut)
        stored = await env.store(env.credential, case.secret(fake))
        assert stored.provider == case.provider
        yield env


def user(text: str) -> pb.ChatMessage:
    return pb.ChatMessage(role=pb.ROLE_USER, content=[pb.ContentPart(text=text)])


def chat_request(env: Env, text: str = "Say hi") -> pb.ChatRequest:
    return pb.ChatRequest(credential=env.credential, model=env.case.chat_model, messages=[user(text)])


def input_type_proto(case: ProviderCase) -> pb.EmbedInputType.ValueType:
    return {
        None: pb.EMBED_INPUT_TYPE_UNSPECIFIED,
        "query": pb.EMBED_INPUT_TYPE_QUERY,
        "document": pb.EMBED_INPUT_TYPE_DOCUMENT,
    }[case.embed_input_type]


def status_details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, float | None]:
    """The ErrorInfo of a hub error, and its RetryInfo delay in seconds (None without one)."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            info, retry, delay = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo(), None
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    detail.Unpack(info)
                elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    detail.Unpack(retry)
                    delay = retry.retry_delay.ToNanoseconds() / 1e9
            return info, delay
    raise AssertionError(f"no status details in {error!r}")


# --- the matrix is complete -------------------------------------------------------------


# Providers with no upstream to fake (models run in the hub's process): tested through the
# hub with their real model in their own file, named here.
IN_PROCESS = {"local": "tests/callers/test_local_embed.py"}


def test_every_implemented_provider_has_a_case() -> None:
    implemented = {
        spec.name
        for spec in registry.specs()
        if spec.capabilities & {Capability.CHAT, Capability.STREAM_CHAT, Capability.EMBED, Capability.RERANK}
    } - set(IN_PROCESS)
    assert all((Path(__file__).parent.parent / path).is_file() for path in IN_PROCESS.values())
    assert {case.provider for case in CASES} == implemented
    for case in CASES:
        if Capability.CHAT in case.capabilities or Capability.STREAM_CHAT in case.capabilities:
            assert case.chat_model, case
            assert case.script_text is not None, case
        if Capability.EMBED in case.capabilities:
            assert case.embed_model, case
            assert case.embed_size, case
        if Capability.RERANK in case.capabilities:
            assert case.rerank_model, case
        assert (case.script_tool_call is None) == (case.check_tool_result is None), case


# --- chat -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases("grpc_chat", Capability.CHAT))
async def test_grpc_chat(case: ProviderCase, tmp_path: Path) -> None:
    async with provider_env(case, tmp_path) as env:
        env.script_text()
        expected = env.expected_usage
        response = await env.chat().Chat(chat_request(env), metadata=env.md, timeout=GRPC_TIMEOUT)
    assert response.message.role == pb.ROLE_ASSISTANT
    assert "".join(part.text for part in response.message.content) == TEXT
    assert not response.message.tool_calls
    assert response.finish_reason == pb.FINISH_REASON_STOP
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.total_tokens) == expected
    assert response.provider == case.provider
    assert response.provider_request_id
    assert response.timings.total.ToNanoseconds() >= response.timings.upstream.ToNanoseconds() > 0


@pytest.mark.parametrize("case", cases("grpc_stream_chat", Capability.STREAM_CHAT))
async def test_grpc_stream_chat(case: ProviderCase, tmp_path: Path) -> None:
    async with provider_env(case, tmp_path) as env:
        env.script_text()
        expected = env.expected_usage
        events = [
            event
            async for event in env.chat().StreamChat(chat_request(env), metadata=env.md, timeout=GRPC_TIMEOUT)
        ]
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds.count("end") == 1
    assert kinds[-1] == "end"
    assert set(kinds[:-1]) == {"text_delta"}
    deltas = [event.text_delta.text for event in events[:-1]]
    assert len([delta for delta in deltas if delta]) >= 2, deltas  # streamed, not one block
    assert "".join(deltas) == TEXT
    end = events[-1].end
    assert end.finish_reason == pb.FINISH_REASON_STOP
    usage = end.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.total_tokens) == expected
    assert end.provider == case.provider
    assert end.provider_request_id
    assert end.timings.time_to_first_token.ToNanoseconds() > 0


@pytest.mark.parametrize("case", cases("sdk_chat", Capability.CHAT))
async def test_openai_sdk_chat(case: ProviderCase, tmp_path: Path) -> None:
    async with provider_env(case, tmp_path) as env, env.sdk() as client:
        env.script_text()
        expected = env.expected_usage
        completion = await client.chat.completions.create(
            model=env.sdk_model(case.chat_model), messages=[{"role": "user", "content": "Say hi"}]
        )
    assert completion.model == f"{case.provider}/{case.chat_model}"
    [choice] = completion.choices
    assert (choice.message.role, choice.message.content) == ("assistant", TEXT)
    assert not choice.message.tool_calls
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    usage = completion.usage
    assert usage.prompt_tokens_details is not None
    cached = usage.prompt_tokens_details.cached_tokens
    assert (usage.prompt_tokens, usage.completion_tokens, cached, usage.total_tokens) == expected


@pytest.mark.parametrize("case", cases("sdk_stream_chat", Capability.STREAM_CHAT))
async def test_openai_sdk_stream_chat(case: ProviderCase, tmp_path: Path) -> None:
    async with provider_env(case, tmp_path) as env, env.sdk() as client:
        env.script_text()
        expected = env.expected_usage
        stream = await client.chat.completions.create(
            model=env.sdk_model(case.chat_model),
            messages=[{"role": "user", "content": "Say hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces: list[str] = []
        finish, usages = None, []
        async for chunk in stream:
            if chunk.usage is not None:
                usages.append(chunk.usage)
            for choice in chunk.choices:
                pieces.append(choice.delta.content or "")
                assert not choice.delta.tool_calls
                finish = choice.finish_reason or finish
    assert "".join(pieces) == TEXT
    assert len([piece for piece in pieces if piece]) >= 2, pieces
    assert finish == "stop"
    [usage] = usages
    assert usage.prompt_tokens_details is not None
    cached = usage.prompt_tokens_details.cached_tokens
    assert (usage.prompt_tokens, usage.completion_tokens, cached, usage.total_tokens) == expected


@pytest.mark.parametrize("case", cases("sdk_tool_round_trip", Capability.CHAT))
async def test_openai_sdk_tool_call_round_trip(case: ProviderCase, tmp_path: Path) -> None:
    async with provider_env(case, tmp_path) as env, env.sdk() as client:
        model = env.sdk_model(case.chat_model)
        question: Json = {"role": "user", "content": "What is the weather in Paris?"}
        if case.script_tool_call is None:
            # No tools at this provider: refused cleanly, before anything is sent.
            sent_before = len(env.fake.requests)
            with pytest.raises(openai.BadRequestError, match="tools"):
                await client.chat.completions.create(model=model, messages=[question], tools=[WEATHER_TOOL])  # type: ignore[list-item]
            assert len(env.fake.requests) == sent_before
            return
        assert case.check_tool_result is not None
        case.script_tool_call(env.fake, "get_weather", TOOL_ARGS)
        first = await client.chat.completions.create(model=model, messages=[question], tools=[WEATHER_TOOL])  # type: ignore[list-item]
        [choice] = first.choices
        assert choice.finish_reason == "tool_calls"
        [call] = choice.message.tool_calls or []
        assert call.type == "function"
        assert call.id
        assert call.function.name == "get_weather"  # type: ignore[union-attr]
        assert json.loads(call.function.arguments) == TOOL_ARGS  # type: ignore[union-attr]

        env.script_text(FINAL_TEXT)
        second = await client.chat.completions.create(
            model=model,
            messages=[
                question,
                choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
                {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT},
            ],
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
        )
        assert second.choices[0].message.content == FINAL_TEXT
        assert second.choices[0].finish_reason == "stop"
        case.check_tool_result(env.fake, call.id, TOOL_RESULT)


@pytest.mark.parametrize("case", cases("sdk_stream_tool_call", Capability.STREAM_CHAT))
async def test_openai_sdk_streamed_tool_call(case: ProviderCase, tmp_path: Path) -> None:
    if case.script_tool_call is None:
        pytest.skip(f"{case.provider} has no tools (refusal checked in the round trip test)")
    async with provider_env(case, tmp_path) as env, env.sdk() as client:
        case.script_tool_call(env.fake, "get_weather", TOOL_ARGS)
        stream = await client.chat.completions.create(
            model=env.sdk_model(case.chat_model),
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            stream=True,
        )
        calls: dict[int, dict[str, str]] = {}
        finish = None
        async for chunk in stream:
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for delta in choice.delta.tool_calls or []:
                    call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                    call["id"] += delta.id or ""
                    if delta.function is not None:
                        call["name"] += delta.function.name or ""
                        call["arguments"] += delta.function.arguments or ""
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["id"]
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == TOOL_ARGS


@pytest.mark.parametrize("case", cases("grpc_tool_round_trip", Capability.CHAT))
async def test_grpc_tool_call_round_trip(case: ProviderCase, tmp_path: Path) -> None:
    if case.script_tool_call is None:
        pytest.skip(f"{case.provider} has no tools (refusal checked in the round trip test)")
    assert case.check_tool_result is not None
    parameters = struct_pb2.Struct()
    parameters.update(WEATHER_PARAMETERS)
    tool = pb.Tool(name="get_weather", description="Weather for a city", parameters=parameters)
    question = user("What is the weather in Paris?")
    async with provider_env(case, tmp_path) as env:
        case.script_tool_call(env.fake, "get_weather", TOOL_ARGS)
        request = pb.ChatRequest(
            credential=env.credential, model=case.chat_model, messages=[question], tools=[tool]
        )
        first = await env.chat().Chat(request, metadata=env.md, timeout=GRPC_TIMEOUT)
        assert first.finish_reason == pb.FINISH_REASON_TOOL_CALLS
        [call] = first.message.tool_calls
        assert call.id
        assert (call.name, json.loads(call.arguments)) == ("get_weather", TOOL_ARGS)

        env.script_text(FINAL_TEXT)
        result = pb.ChatMessage(
            role=pb.ROLE_TOOL, tool_call_id=call.id, content=[pb.ContentPart(text=TOOL_RESULT)]
        )
        del request.messages[:]
        request.messages.extend([question, first.message, result])
        second = await env.chat().Chat(request, metadata=env.md, timeout=GRPC_TIMEOUT)
        assert "".join(part.text for part in second.message.content) == FINAL_TEXT
        case.check_tool_result(env.fake, call.id, TOOL_RESULT)


@pytest.mark.parametrize("case", cases("rest_chat", Capability.CHAT))
async def test_rest_chat(case: ProviderCase, tmp_path: Path) -> None:
    async with provider_env(case, tmp_path) as env:
        env.script_text()
        expected = env.expected_usage
        body = {
            "credential": env.credential,
            "model": case.chat_model,
            "messages": [{"role": "ROLE_USER", "content": [{"text": "Say hi"}]}],
        }
        async with env.hut.http.post(
            env.hut.http_base + "/v1/chat", json=body, headers=env.hut.headers(env.hut.tokens.invoke_only)
        ) as response:
            assert response.status == 200, await response.text()
            answer = await response.json()
    assert answer["message"]["role"] == "ROLE_ASSISTANT"
    assert "".join(part["text"] for part in answer["message"]["content"]) == TEXT
    assert answer["finish_reason"] == "FINISH_REASON_STOP"
    usage = answer["usage"]
    names = ("input_tokens", "output_tokens", "cached_tokens", "total_tokens")
    assert tuple(int(usage[name]) for name in names) == expected
    assert answer["provider"] == case.provider


@pytest.mark.parametrize("case", cases("rest_stream_chat", Capability.STREAM_CHAT))
async def test_rest_stream_chat_is_ndjson(case: ProviderCase, tmp_path: Path) -> None:
    async with provider_env(case, tmp_path) as env:
        env.script_text()
        expected = env.expected_usage
        body = {
            "credential": env.credential,
            "model": case.chat_model,
            "messages": [{"role": "ROLE_USER", "content": [{"text": "Say hi"}]}],
        }
        async with env.hut.http.post(
            env.hut.http_base + "/v1/chat:stream",
            json=body,
            headers=env.hut.headers(env.hut.tokens.invoke_only),
        ) as response:
            assert response.status == 200, await response.text()
            lines = [json.loads(line) for line in (await response.text()).splitlines()]
    results = [line["result"] for line in lines]
    assert "".join(result.get("text_delta", {}).get("text", "") for result in results) == TEXT
    assert [i for i, result in enumerate(results) if "end" in result] == [len(results) - 1]
    assert results[-1]["end"]["finish_reason"] == "FINISH_REASON_STOP"
    usage = results[-1]["end"]["usage"]
    names = ("input_tokens", "output_tokens", "cached_tokens", "total_tokens")
    assert tuple(int(usage[name]) for name in names) == expected


# --- embeddings and rerank ---------------------------------------------------------------


@pytest.mark.parametrize("case", cases("grpc_embed", Capability.EMBED))
async def test_grpc_embed(case: ProviderCase, tmp_path: Path) -> None:
    async with provider_env(case, tmp_path) as env:
        request = pb.EmbedRequest(
            credential=env.credential,
            model=case.embed_model,
            inputs=EMBED_INPUTS,
            input_type=input_type_proto(case),
        )
        if case.embed_dimensions is not None:
            request.dimensions = case.embed_dimensions
        response = await env.chat().Embed(request, metadata=env.md, timeout=GRPC_TIMEOUT)
    assert [embedding.index for embedding in response.embeddings] == [0, 1, 2]
    assert [len(embedding.values) for embedding in response.embeddings] == [case.embed_size] * 3
    assert all(any(embedding.values) for embedding in response.embeddings)
    assert response.timings.upstream.ToNanoseconds() > 0


@pytest.mark.parametrize("case", cases("sdk_embed", Capability.EMBED))
async def test_openai_sdk_embeddings(case: ProviderCase, tmp_path: Path) -> None:
    extra: Json = {}
    if case.embed_dimensions is not None:
        extra["dimensions"] = case.embed_dimensions
    if case.embed_input_type is not None:
        extra["extra_body"] = {"input_type": case.embed_input_type}
    async with provider_env(case, tmp_path) as env, env.sdk() as client:
        # The SDK asks for base64 unless told otherwise; ask for floats once, too.
        default = await client.embeddings.create(
            model=env.sdk_model(case.embed_model), input=EMBED_INPUTS, **extra
        )
        floats = await client.embeddings.create(
            model=env.sdk_model(case.embed_model), input=EMBED_INPUTS, encoding_format="float", **extra
        )
    for answer in (default, floats):
        assert answer.model == f"{case.provider}/{case.embed_model}"
        assert [item.index for item in answer.data] == [0, 1, 2]
        assert [len(item.embedding) for item in answer.data] == [case.embed_size] * 3
    for decoded, plain in zip(default.data, floats.data, strict=True):  # base64 float32 vs JSON floats
        assert decoded.embedding == pytest.approx(plain.embedding, rel=1e-6)


def check_rerank(results: Sequence[tuple[int, float]]) -> None:
    assert len(results) == 2
    assert results[0][0] == 1  # "the weather in paris is sunny"
    assert results[0][1] >= results[1][1]


@pytest.mark.parametrize("case", cases("grpc_rerank", Capability.RERANK))
async def test_grpc_rerank(case: ProviderCase, tmp_path: Path) -> None:
    async with provider_env(case, tmp_path) as env:
        response = await env.chat().Rerank(
            pb.RerankRequest(
                credential=env.credential,
                model=case.rerank_model,
                query=RERANK_QUERY,
                documents=RERANK_DOCUMENTS,
                top_n=2,
            ),
            metadata=env.md,
            timeout=GRPC_TIMEOUT,
        )
    check_rerank([(result.index, result.score) for result in response.results])


@pytest.mark.parametrize("case", cases("rest_rerank", Capability.RERANK))
async def test_rest_rerank(case: ProviderCase, tmp_path: Path) -> None:
    async with provider_env(case, tmp_path) as env:
        body = {
            "credential": env.credential,
            "model": case.rerank_model,
            "query": RERANK_QUERY,
            "documents": RERANK_DOCUMENTS,
            "top_n": 2,
        }
        async with env.hut.http.post(
            env.hut.http_base + "/v1/rerank", json=body, headers=env.hut.headers(env.hut.tokens.invoke_only)
        ) as response:
            assert response.status == 200, await response.text()
            answer = await response.json()
    check_rerank([(int(result.get("index", 0)), float(result["score"])) for result in answer["results"]])


# --- verification and errors ------------------------------------------------------------


@pytest.mark.parametrize("case", cases("verify_valid", Capability.VERIFY))
async def test_verify_stored_credential(case: ProviderCase, tmp_path: Path) -> None:
    async with provider_env(case, tmp_path) as env:
        result = await env.hut.credentials_stub().VerifyCredential(
            cpb.VerifyCredentialRequest(id=env.credential), metadata=env.admin, timeout=GRPC_TIMEOUT
        )
    assert (result.valid, result.outcome, result.reason) == (True, cpb.VERIFY_OUTCOME_VALID, "ok")
    assert result.provider == case.provider


@pytest.mark.parametrize("case", cases("verify_rejected", Capability.VERIFY))
async def test_wrong_key_is_rejected(case: ProviderCase, tmp_path: Path) -> None:
    async with provider_env(case, tmp_path) as env:
        wrong = case.wrong_secret(env.fake)
        await env.store("wrong", wrong)
        result = await env.hut.credentials_stub().VerifyCredential(
            cpb.VerifyCredentialRequest(id="wrong"), metadata=env.admin, timeout=GRPC_TIMEOUT
        )
        assert (result.valid, result.outcome) == (False, cpb.VERIFY_OUTCOME_REJECTED), result.reason
        for value in wrong.values():
            assert value not in result.reason

        # A call with the wrong key fails as an authentication failure, on either capability.
        if Capability.CHAT in case.capabilities:
            call = env.chat().Chat(
                pb.ChatRequest(credential="wrong", model=case.chat_model, messages=[user("Hi")]),
                metadata=env.md,
                timeout=GRPC_TIMEOUT,
            )
        else:
            call = env.chat().Embed(
                pb.EmbedRequest(
                    credential="wrong",
                    model=case.embed_model,
                    inputs=["x"],
                    input_type=input_type_proto(case),
                ),
                metadata=env.md,
                timeout=GRPC_TIMEOUT,
            )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, caught.value.details()
    assert status_details(caught.value)[0].reason == "PROVIDER_AUTH_FAILED"
    for value in wrong.values():
        assert value not in (caught.value.details() or "")


async def sdk_call(env: Env, client: openai.AsyncOpenAI) -> object:
    """One call of the provider's main capability through the OpenAI-compatible endpoint."""
    case = env.case
    if Capability.CHAT in case.capabilities:
        return await client.chat.completions.create(
            model=env.sdk_model(case.chat_model), messages=[{"role": "user", "content": "Hi"}]
        )
    return await client.embeddings.create(
        model=env.sdk_model(case.embed_model),
        input="x",
        extra_body={"input_type": case.embed_input_type} if case.embed_input_type else None,
    )


@pytest.mark.parametrize("case", cases("rate_limited"))
async def test_rate_limit_maps_to_resource_exhausted(case: ProviderCase, tmp_path: Path) -> None:
    chat = Capability.CHAT in case.capabilities
    async with provider_env(case, tmp_path) as env, env.sdk() as client:
        case.force_429(env.fake)
        if chat:
            call = env.chat().Chat(chat_request(env), metadata=env.md, timeout=GRPC_TIMEOUT)
        else:
            call = env.chat().Embed(
                pb.EmbedRequest(
                    credential=env.credential,
                    model=case.embed_model,
                    inputs=["x"],
                    input_type=input_type_proto(case),
                ),
                metadata=env.md,
                timeout=GRPC_TIMEOUT,
            )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        with pytest.raises(openai.RateLimitError) as limited:
            await sdk_call(env, client)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, delay = status_details(caught.value)
    assert (info.reason, info.domain) == ("PROVIDER_RATE_LIMITED", "integration-hub")
    assert limited.value.status_code == 429
    if case.retry_after is not None:
        assert delay == case.retry_after
        assert limited.value.response.headers["retry-after"] == str(case.retry_after)
