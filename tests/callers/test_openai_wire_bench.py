"""Micro-benchmarks of the OpenAI-wire hot path: recorded, and one bound asserted.

The asserted bound is on the conversion code alone (request dataclasses to body
bytes, answer bytes to the response dataclasses), measured without a network: it
is the part of the hub's per-call overhead that this package owns. The end-to-end
loop against the local fake is printed and recorded only, since it also measures
aiohttp, the fake server and the machine (run with `-s` to see the figures).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import orjson
import pytest

from callers import pools
from callers.openai.chat import CALLER as OPENAI_CHAT
from callers.openai.targets import Operation
from callers.openai.transport import SSEParser
from callers.openai.wire import StreamDecoder, chat_body, parse_chat
from callers.types import (
    ChatRequest,
    SamplingParams,
    SystemMessage,
    TextPart,
    Tool,
    UserMessage,
)
from tests.fakes.openai_server import ChatReply, FakeOpenAI
from tests.fakes.secret_fields import PlainSecret

CONVERSION_BUDGET_US = 50.0
ITERATIONS = 10_000
SEQUENTIAL_CALLS = 2_000

REQUEST = ChatRequest(
    model="gpt-4o-mini",
    messages=[
        SystemMessage("You are a concise assistant for a customer-support chatbot."),
        UserMessage([TextPart("Where is my order #12345? It was due yesterday.")]),
    ],
    tools=[
        Tool(
            name="lookup_order",
            description="Find an order by its number",
            parameters={"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]},
        )
    ],
    sampling=SamplingParams(temperature=0.2, max_output_tokens=256),
)

ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-AbCdEf0123456789",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "I'm checking order #12345 for you now; one moment please.",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 92,
            "completion_tokens": 15,
            "total_tokens": 107,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_0123456789",
    }
)

STREAM_EVENT = (
    b'data: {"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"gpt-4o-mini","system_fingerprint":"fp_0","choices":[{"index":0,'
    b'"delta":{"content":" order"},"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
)


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


def cpu_microseconds_per_call(work: Callable[[], object], iterations: int) -> float:
    """Best of three runs of `iterations` calls, in CPU microseconds per call."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(iterations):
            work()
        best = min(best, time.process_time() - started)
    return best / iterations * 1e6


def test_conversion_overhead_is_under_budget(record_property: Callable[[str, object], None]) -> None:
    secret = PlainSecret(api_key="sk-bench")
    options = {"base_url": "https://api.openai.com/v1", "organization": "org-1"}

    def round_trip() -> object:
        # Everything the caller does per call besides aiohttp's own work: resolve the
        # (cached) target, build the headers with the key, encode, decode.
        target = OPENAI_CHAT.targets.target(options, REQUEST.model, Operation.CHAT)
        OPENAI_CHAT.targets.headers(target, secret)
        chat_body(REQUEST, target.max_tokens_field, stream=False)
        return parse_chat(orjson.loads(ANSWER), "req_1")

    def stream_event() -> object:
        decoder = StreamDecoder("req_1")
        return [decoder.feed(payload) for payload in SSEParser().feed(STREAM_EVENT)]

    round_trip()  # warm up
    per_call = cpu_microseconds_per_call(round_trip, ITERATIONS)
    per_event = cpu_microseconds_per_call(stream_event, ITERATIONS)
    record_property("conversion_us_per_call", round(per_call, 2))
    record_property("stream_event_us", round(per_event, 2))
    print(
        f"\ntarget+headers+encode+decode: {per_call:.1f} us/call; "
        f"one stream event (split+decode): {per_event:.1f} us"
    )
    assert per_call < CONVERSION_BUDGET_US


async def test_sequential_chat_calls_against_the_fake(record_property: Callable[[str, object], None]) -> None:
    secret = PlainSecret(api_key="sk-bench")
    async with FakeOpenAI(valid_keys={"sk-bench"}, default_reply=ChatReply(text="ok")) as fake:
        options = {"base_url": fake.base_url}
        for _ in range(50):  # warm up: connection, caches
            await OPENAI_CHAT.chat(secret, options, REQUEST, timeout=5)
        fake.requests.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(SEQUENTIAL_CALLS):
            await OPENAI_CHAT.chat(secret, options, REQUEST, timeout=5)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    per_call_ms = wall / SEQUENTIAL_CALLS * 1e3
    record_property("sequential_chat_ms_per_call", round(per_call_ms, 3))
    record_property("sequential_chat_cpu_ms_per_call", round(cpu / SEQUENTIAL_CALLS * 1e3, 3))
    print(
        f"\n{SEQUENTIAL_CALLS} sequential chat calls through the caller and the in-process fake: "
        f"{per_call_ms:.3f} ms/call wall, {cpu / SEQUENTIAL_CALLS * 1e3:.3f} ms/call CPU "
        "(client and fake server together)"
    )
    assert len(fake.requests) == SEQUENTIAL_CALLS
    assert len({request.peer for request in fake.requests}) == 1  # one kept-alive connection throughout
