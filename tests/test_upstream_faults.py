"""An upstream that misbehaves: each fault becomes one clear, mapped error on every transport
(gRPC, REST, the OpenAI-compatible endpoint), bounded in time, and the hub keeps serving.

The fake OpenAI upstream on loopback produces each fault on the wire (tests/fakes/
openai_server.py): a slow answer, no answer at all, a TCP reset, 429 with Retry-After,
a burst of 500s, a body that is not JSON, and streams that are cut, end early, carry a
malformed event or stall. The hubs here make one attempt per call (the harness's
policy), so what is tested is the mapping of one provider answer; retries are tested
under tests/policy/. After every fault one ordinary call must succeed, and the logs
must show no unexpected error (no traceback: a provider fault is not a hub crash).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from integration_hub.v1 import chat_pb2 as pb
from integration_hub.v1 import chat_pb2_grpc
from integration_hub.v1 import credentials_pb2 as cpb
from tests.fakes.openai_server import ChatReply, FakeOpenAI
from tests.harness import ONE_ATTEMPT_POLICY, HubUnderTest, running_hub, settings_for

KEY = "sk-test-Faults0123456789abcdefgh"
# The call timeout the tests ask for on gRPC and REST. The OpenAI-compatible endpoint has no
# per-request timeout, so the policy's total_timeout (the operator's bound) bounds it there.
CALL_TIMEOUT = 0.5
POLICY_TIMEOUT = 1.0
POLICY = ONE_ATTEMPT_POLICY + f"total_timeout = {POLICY_TIMEOUT}\n"
# How much later than its timeout a call may end: the hub's own overhead, generously.
SLACK = 0.5
TRANSPORTS = ["grpc", "rest", "openai"]

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(valid_keys={KEY}) as server:
        yield server


@pytest.fixture
async def hub(tmp_path: Path, fake: FakeOpenAI) -> AsyncIterator[HubUnderTest]:
    # Mapping a provider fault does not depend on the store: SQLite only.
    async with running_hub(settings_for(tmp_path, database_url=None, policy=POLICY)) as hut:
        await hut.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(
                provider="openai", name="main", secret={"api_key": KEY}, options={"base_url": fake.base_url}
            ),
            metadata=hut.auth(hut.tokens.admin),
        )
        yield hut


@dataclass
class Outcome:
    """A call's result, the same on every transport: OK, or the hub's error."""

    code: str  # a gRPC status code name ("OK" for success)
    reason: str = ""
    message: str = ""
    retry_after: float | None = None  # RetryInfo (gRPC, REST) / the Retry-After header (OpenAI)
    http_status: int | None = None
    text: str = ""  # the answer's text on success, or what a stream delivered before it failed
    elapsed: float = 0.0
    ended_normally: bool = False  # streams: an `end` event / finish_reason + [DONE] arrived


_HTTP_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def grpc_error(error: grpc.aio.AioRpcError) -> Outcome:
    reason, retry_after = "", None
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    reason = info.reason
                elif detail.Unpack(retry):
                    retry_after = retry.retry_delay.ToNanoseconds() / 1e9
    return Outcome(error.code().name, reason, error.details() or "", retry_after)


def google_error(status: int, body: dict[str, Any]) -> Outcome:
    error = body["error"]
    assert error["code"] == status
    reason, retry_after = "", None
    for detail in error["details"]:
        if detail["@type"].endswith("ErrorInfo"):
            reason = detail["reason"]
        elif detail["@type"].endswith("RetryInfo"):
            retry_after = float(detail["retry_delay"].removesuffix("s"))
    return Outcome(error["status"], reason, error["message"], retry_after, http_status=status)


def openai_error(status: int, body: dict[str, Any], headers: Any) -> Outcome:
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error  # OpenAI's shape
    retry = headers.get("Retry-After")
    return Outcome(
        _HTTP_CODES.get(status, str(status)),
        error["code"].upper(),
        error["message"],
        float(retry) if retry else None,
        http_status=status,
    )


# --- one chat call per transport ---------------------------------------------------------


def grpc_request(timeout: float | None) -> pb.ChatRequest:
    request = pb.ChatRequest(
        credential="main",
        model="gpt-4o",
        messages=[pb.ChatMessage(role=pb.ROLE_USER, content=[pb.ContentPart(text="Hi")])],
    )
    if timeout is not None:
        request.timeout.FromNanoseconds(int(timeout * 1e9))
    return request


def rest_body(timeout: float | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "credential": "main",
        "model": "gpt-4o",
        "messages": [{"role": "ROLE_USER", "content": [{"text": "Hi"}]}],
    }
    if timeout is not None:
        body["timeout"] = f"{timeout}s"
    return body


OPENAI_BODY = {"model": "main/gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}


async def chat(hut: HubUnderTest, transport: str, timeout: float | None = CALL_TIMEOUT) -> Outcome:
    """One unary chat call; its outcome and how long it took."""
    started = time.monotonic()
    outcome = await _chat(hut, transport, timeout)
    outcome.elapsed = time.monotonic() - started
    return outcome


async def _chat(hut: HubUnderTest, transport: str, timeout: float | None) -> Outcome:
    headers = hut.headers(hut.tokens.invoke_only)
    if transport == "grpc":
        try:
            response = await chat_pb2_grpc.ChatServiceStub(hut.channel).Chat(
                grpc_request(timeout), metadata=hut.auth(hut.tokens.invoke_only), timeout=30
            )
        except grpc.aio.AioRpcError as error:
            return grpc_error(error)
        return Outcome("OK", text=response.message.content[0].text)
    if transport == "rest":
        async with hut.http.post(hut.http_base + "/v1/chat", json=rest_body(timeout), headers=headers) as r:
            body = await r.json()
            if r.status != 200:
                return google_error(r.status, body)
        return Outcome("OK", text=body["message"]["content"][0]["text"], http_status=200)
    async with hut.http.post(
        hut.http_base + "/openai/v1/chat/completions", json=OPENAI_BODY, headers=headers
    ) as r:
        body = await r.json()
        if r.status != 200:
            return openai_error(r.status, body, r.headers)
    return Outcome("OK", text=body["choices"][0]["message"]["content"], http_status=200)


async def stream(hut: HubUnderTest, transport: str, timeout: float | None = CALL_TIMEOUT) -> Outcome:
    """One streaming chat call: what arrived, and how it ended."""
    started = time.monotonic()
    outcome = await _stream(hut, transport, timeout)
    outcome.elapsed = time.monotonic() - started
    return outcome


async def _stream(hut: HubUnderTest, transport: str, timeout: float | None) -> Outcome:
    headers = hut.headers(hut.tokens.invoke_only)
    text: list[str] = []
    if transport == "grpc":
        ended = False
        try:
            async for event in chat_pb2_grpc.ChatServiceStub(hut.channel).StreamChat(
                grpc_request(timeout), metadata=hut.auth(hut.tokens.invoke_only), timeout=30
            ):
                assert not ended, "an event after the end"
                text.append(event.text_delta.text)
                ended = event.HasField("end")
        except grpc.aio.AioRpcError as error:
            outcome = grpc_error(error)
            outcome.text, outcome.ended_normally = "".join(text), ended
            return outcome
        return Outcome("OK", text="".join(text), ended_normally=ended)
    if transport == "rest":
        async with hut.http.post(
            hut.http_base + "/v1/chat:stream", json=rest_body(timeout), headers=headers
        ) as r:
            if r.status != 200:
                return google_error(r.status, await r.json())
            lines = [json.loads(line) for line in (await r.text()).splitlines()]
        for line in lines[:-1]:
            text.append(line["result"].get("text_delta", {}).get("text", ""))
        last = lines[-1]
        if "error" in last:  # the stream's failure, after a 200
            outcome = google_error(last["error"]["code"], last)
            outcome.text, outcome.http_status = "".join(text), 200
            return outcome
        assert "end" in last["result"], last
        return Outcome("OK", text="".join(text), http_status=200, ended_normally=True)
    async with hut.http.post(
        hut.http_base + "/openai/v1/chat/completions", json={**OPENAI_BODY, "stream": True}, headers=headers
    ) as r:
        if r.status != 200:
            return openai_error(r.status, await r.json(), r.headers)
        raw = await r.text()
    events = [block.removeprefix("data: ") for block in raw.split("\n\n") if block]
    done = events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in (events[:-1] if done else events)]
    finished = False
    for chunk in chunks[:-1] if not done else chunks:
        for choice in chunk["choices"]:
            text.append(choice["delta"].get("content") or "")
            finished = finished or choice["finish_reason"] is not None
    if done:
        assert finished
        return Outcome("OK", text="".join(text), http_status=200, ended_normally=True)
    # No [DONE]: the last event must be an error in OpenAI's shape, never a silent end.
    outcome = openai_error(r.status, chunks[-1], {})
    outcome.code = _code_of_reason(outcome.reason)
    outcome.text, outcome.ended_normally = "".join(text), finished
    return outcome


def _code_of_reason(reason: str) -> str:
    # The SSE error event carries no status (the 200 has gone out); its code is the reason.
    return {
        "PROVIDER_UNAVAILABLE": "UNAVAILABLE",
        "PROVIDER_TIMEOUT": "DEADLINE_EXCEEDED",
        "PROVIDER_RATE_LIMITED": "RESOURCE_EXHAUSTED",
    }[reason]


async def still_serving(hut: HubUnderTest, fake: FakeOpenAI, transport: str) -> None:
    fake.force_status, fake.retry_after, fake.delay = None, None, 0.0
    fake.script(ChatReply(text="all good"))
    outcome = await chat(hut, transport)
    assert (outcome.code, outcome.text) == ("OK", "all good"), outcome
    fake.script(ChatReply(text="all good"))
    outcome = await stream(hut, transport)
    assert (outcome.code, outcome.text, outcome.ended_normally) == ("OK", "all good", True), outcome


def no_crash_in(hut: HubUnderTest) -> None:
    logs = hut.logs.getvalue()
    assert "unexpected error" not in logs
    assert "Traceback" not in logs
    assert KEY not in logs


# --- unary faults ------------------------------------------------------------------------


def bound_for(transport: str) -> float:
    return (POLICY_TIMEOUT if transport == "openai" else CALL_TIMEOUT) + SLACK


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_slow_upstream_is_deadline_exceeded(
    hub: HubUnderTest, fake: FakeOpenAI, transport: str
) -> None:
    fake.delay = 5.0  # answers, but long after the call's timeout
    outcome = await chat(hub, transport)
    assert (outcome.code, outcome.reason) == ("DEADLINE_EXCEEDED", "PROVIDER_TIMEOUT"), outcome
    assert "did not answer within the timeout" in outcome.message
    assert outcome.elapsed < bound_for(transport)
    await still_serving(hub, fake, transport)
    no_crash_in(hub)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_upstream_that_never_answers_is_bounded_by_the_call_timeout(
    hub: HubUnderTest, fake: FakeOpenAI, transport: str
) -> None:
    fake.script(ChatReply(hang=True))
    outcome = await chat(hub, transport)
    assert (outcome.code, outcome.reason) == ("DEADLINE_EXCEEDED", "PROVIDER_TIMEOUT"), outcome
    expected = POLICY_TIMEOUT if transport == "openai" else CALL_TIMEOUT
    assert expected - 0.05 < outcome.elapsed < expected + SLACK
    # The hub gave up on the upstream request too (it does not linger after the timeout).
    await fake.wait_for_close(fake.requests[-1].peer, timeout=1.0)
    await still_serving(hub, fake, transport)
    no_crash_in(hub)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_connection_reset_is_unavailable(hub: HubUnderTest, fake: FakeOpenAI, transport: str) -> None:
    fake.script(ChatReply(reset=True))
    outcome = await chat(hub, transport)
    assert (outcome.code, outcome.reason) == ("UNAVAILABLE", "PROVIDER_UNAVAILABLE"), outcome
    assert "127.0.0.1" in outcome.message
    await still_serving(hub, fake, transport)
    no_crash_in(hub)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_429_with_retry_after_is_resource_exhausted_with_retry_info(
    hub: HubUnderTest, fake: FakeOpenAI, transport: str
) -> None:
    fake.force_status, fake.retry_after = 429, "7"
    outcome = await chat(hub, transport)
    assert (outcome.code, outcome.reason) == ("RESOURCE_EXHAUSTED", "PROVIDER_RATE_LIMITED"), outcome
    assert outcome.retry_after == 7.0
    assert "Rate limit reached" in outcome.message
    streamed = await stream(hub, transport)
    assert (streamed.code, streamed.reason, streamed.retry_after) == (
        "RESOURCE_EXHAUSTED",
        "PROVIDER_RATE_LIMITED",
        7.0,
    ), streamed
    await still_serving(hub, fake, transport)
    no_crash_in(hub)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_burst_of_500s_is_unavailable_for_each_call(
    hub: HubUnderTest, fake: FakeOpenAI, transport: str
) -> None:
    # Four concurrent calls, each answered 500: below the breaker's default threshold of five
    # consecutive failures, so the circuit stays closed and the next call reaches the provider.
    fake.script(*[ChatReply(status=500) for _ in range(4)])
    outcomes = await asyncio.gather(*[chat(hub, transport) for _ in range(4)])
    assert [(o.code, o.reason) for o in outcomes] == [("UNAVAILABLE", "PROVIDER_UNAVAILABLE")] * 4, outcomes
    assert all(o.http_status in (None, 503) for o in outcomes)
    await still_serving(hub, fake, transport)
    no_crash_in(hub)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_malformed_json_answer_is_unavailable_and_says_so(
    hub: HubUnderTest, fake: FakeOpenAI, transport: str
) -> None:
    fake.script(ChatReply(malformed=True))
    outcome = await chat(hub, transport)
    assert (outcome.code, outcome.reason) == ("UNAVAILABLE", "PROVIDER_UNAVAILABLE"), outcome
    assert "not JSON" in outcome.message
    await still_serving(hub, fake, transport)
    no_crash_in(hub)


# --- streams failing after they started ----------------------------------------------------


STREAM_FAULTS: dict[str, tuple[ChatReply, str, str, str]] = {
    # name: (the fake's reply, code, reason, words of the message)
    "cut mid-way": (
        ChatReply(text="one two three four five", cut_after=3),
        "UNAVAILABLE",
        "PROVIDER_UNAVAILABLE",
        "closed the connection mid-answer",
    ),
    "ended without finishing": (
        ChatReply(text="one two three four five", end_after=3),
        "UNAVAILABLE",
        "PROVIDER_UNAVAILABLE",
        "ended the stream before the answer was complete",
    ),
    "a malformed event": (
        ChatReply(text="one two three four five", malformed_after=3),
        "UNAVAILABLE",
        "PROVIDER_UNAVAILABLE",
        "malformed stream event",
    ),
    "stalled mid-way": (
        ChatReply(text="one two three four five", stall_after=3),
        "DEADLINE_EXCEEDED",
        "PROVIDER_TIMEOUT",
        "did not answer within the timeout",
    ),
}


@pytest.mark.parametrize("fault", list(STREAM_FAULTS))
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_stream_failing_mid_way_ends_with_the_mapped_error_never_a_normal_end(
    hub: HubUnderTest, fake: FakeOpenAI, transport: str, fault: str
) -> None:
    reply, code, reason, words = STREAM_FAULTS[fault]
    fake.script(reply)
    outcome = await stream(hub, transport)
    assert (outcome.code, outcome.reason) == (code, reason), outcome
    assert words in outcome.message
    assert outcome.text == "one two "  # what the provider sent before the fault was delivered
    assert not outcome.ended_normally
    if transport != "grpc":
        assert outcome.http_status == 200  # the failure came after the stream had started
    assert outcome.elapsed < bound_for(transport)
    await still_serving(hub, fake, transport)
    no_crash_in(hub)


STREAM_START_FAULTS: dict[str, tuple[Callable[[FakeOpenAI], None], str, str]] = {
    "reset": (lambda fake: fake.script(ChatReply(reset=True)), "UNAVAILABLE", "PROVIDER_UNAVAILABLE"),
    "never answers": (
        lambda fake: fake.script(ChatReply(hang=True)),
        "DEADLINE_EXCEEDED",
        "PROVIDER_TIMEOUT",
    ),
    "500": (lambda fake: fake.script(ChatReply(status=500)), "UNAVAILABLE", "PROVIDER_UNAVAILABLE"),
}


@pytest.mark.parametrize("fault", list(STREAM_START_FAULTS))
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_stream_failing_before_its_first_event_is_an_ordinary_error(
    hub: HubUnderTest, fake: FakeOpenAI, transport: str, fault: str
) -> None:
    arrange, code, reason = STREAM_START_FAULTS[fault]
    arrange(fake)
    outcome = await stream(hub, transport)
    assert (outcome.code, outcome.reason) == (code, reason), outcome
    assert outcome.text == ""
    if transport != "grpc":
        assert outcome.http_status not in (None, 200)  # an HTTP error status, not a failed 200
    assert outcome.elapsed < bound_for(transport)
    await still_serving(hub, fake, transport)
    no_crash_in(hub)
