"""The TelephonyService over REST (the routes of its google.api.http annotations), against
the fake Vonage: POST /v1/calls, GET /v1/calls/{call_id}, GET /v1/calls (filters, pages),
POST /v1/calls/{call_id}:hangup and GET /v1/calls:watch (newline-delimited JSON), with
bad requests answered 400 naming the field in a JSON error body, and the provider's
errors mapped to their HTTP statuses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callers.types import CallStatus
from integration_hub.v1 import credentials_pb2 as cpb
from tests.fakes.vonage_server import FakeVonage
from tests.harness import HubUnderTest, free_port, running_hub, settings_for
from tests.telephony.hub_calls import url_parts

TO, FROM = "+14155552671", "+14155550199"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


@pytest.fixture
async def vonage() -> AsyncIterator[FakeVonage]:
    async with FakeVonage() as fake:
        yield fake


@pytest.fixture
async def hub(tmp_path: Path, vonage: FakeVonage) -> AsyncIterator[HubUnderTest]:
    port = free_port()
    settings = settings_for(
        tmp_path, database_url=None, http_port=port, public_url=f"http://127.0.0.1:{port}"
    )
    async with running_hub(settings) as running:
        await running.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(
                provider="vonage", name="phone", secret=vonage.secret, options=vonage.options
            ),
            metadata=running.auth(running.tokens.admin),
        )
        yield running


def media_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "credential": "phone",
        "to": TO,
        "from": FROM,
        "action": {"media_stream": {"parameters": {"agent": "support"}}},
        "metadata": {"order": "42"},
    }
    body.update(overrides)
    return body


async def rest(
    hub: HubUnderTest, method: str, path: str, token: str | None = None, **kwargs: Any
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    headers = hub.headers(token or hub.tokens.invoke_only) if token != "" else {}
    async with hub.http.request(method, hub.http_base + path, headers=headers, **kwargs) as response:
        assert response.content_type == "application/json", await response.text()
        return response.status, await response.json(), response


async def place(hub: HubUnderTest, **overrides: Any) -> dict[str, Any]:
    status, body, _ = await rest(hub, "POST", "/v1/calls", json=media_body(**overrides))
    assert status == 200, body
    call: dict[str, Any] = body["call"]
    return call


def field_error(body: dict[str, Any]) -> tuple[int, str, str, str, str]:
    """(code, status, reason, field, message) of a JSON error body."""
    error = body["error"]
    info = next(d for d in error["details"] if d["@type"] == ERROR_INFO)
    return error["code"], error["status"], info["reason"], info["metadata"].get("field", ""), error["message"]


async def read_watch(hub: HubUnderTest, count: int, **params: str) -> list[dict[str, Any]]:
    """The first `count` lines of GET /v1/calls:watch."""
    async with hub.http.get(
        hub.http_base + "/v1/calls:watch",
        params=params,
        headers=hub.headers(hub.tokens.invoke_only),
        timeout=aiohttp.ClientTimeout(total=10),
    ) as response:
        assert response.status == 200
        assert response.content_type == "application/x-ndjson"
        lines = []
        while len(lines) < count:
            line = await response.content.readline()
            assert line, "the stream ended early"
            lines.append(json.loads(line))
    return lines


async def test_place_get_list_and_hang_up_over_rest(hub: HubUnderTest, vonage: FakeVonage) -> None:
    call = await place(hub, ring_timeout="30s")
    assert (call["provider"], call["to"], call["from"], call["status"]) == (
        "vonage",
        TO,
        FROM,
        "CALL_STATUS_QUEUED",
    )
    assert call["metadata"] == {"order": "42"}
    assert call["credential_name"] == "phone"
    assert call["provider_call_id"] in vonage.calls
    fake_call = vonage.calls[call["provider_call_id"]]
    call_id, _, leaf = url_parts(fake_call.media_url)
    assert (call_id, leaf) == (call["id"], "media")
    assert fake_call.stream_parameters["agent"] == "support"
    assert fake_call.ringing_timer == 30
    status, got, _ = await rest(hub, "GET", f"/v1/calls/{call['id']}")
    assert status == 200
    assert got["call"] == call
    # Newest first, a page at a time, filtered by status.
    second = await place(hub)
    status, page, _ = await rest(hub, "GET", "/v1/calls", params={"page_size": "1"})
    assert [c["id"] for c in page["calls"]] == [second["id"]]
    assert page["next_page_token"]
    status, rest_page, _ = await rest(
        hub, "GET", "/v1/calls", params={"page_size": "1", "page_token": page["next_page_token"]}
    )
    assert [c["id"] for c in rest_page["calls"]] == [call["id"]]
    assert rest_page["next_page_token"] == ""
    assert await vonage.send_status(call["provider_call_id"], CallStatus.RINGING) == 200
    status, ringing, _ = await rest(hub, "GET", "/v1/calls", params={"status": "CALL_STATUS_RINGING"})
    assert [(c["id"], c["status"]) for c in ringing["calls"]] == [(call["id"], "CALL_STATUS_RINGING")]
    # Hang up: Vonage is told, the call stays as it was until its event says how it ended.
    status, hung, _ = await rest(hub, "POST", f"/v1/calls/{call['id']}:hangup", json={})
    assert status == 200, hung
    assert hung["call"]["status"] == "CALL_STATUS_RINGING"
    assert call["provider_call_id"] in vonage.hung_up
    assert await vonage.send_status(call["provider_call_id"], CallStatus.COMPLETED, duration="3") == 200
    status, ended, _ = await rest(hub, "GET", f"/v1/calls/{call['id']}")
    assert (ended["call"]["status"], ended["call"]["duration"]) == ("CALL_STATUS_COMPLETED", "3s")


async def test_watch_over_rest_is_newline_delimited_json(hub: HubUnderTest, vonage: FakeVonage) -> None:
    call = await place(hub)
    watching = asyncio.create_task(read_watch(hub, 3))
    await asyncio.sleep(0.3)  # the watcher reads from "now"
    for status in (CallStatus.RINGING, CallStatus.IN_PROGRESS, CallStatus.COMPLETED):
        assert await vonage.send_status(call["provider_call_id"], status) == 200
    lines = await asyncio.wait_for(watching, 10)
    events = [line["result"]["event"] for line in lines]
    assert [(e["status"], e["applied"], e["call_id"]) for e in events] == [
        ("CALL_STATUS_RINGING", True, call["id"]),
        ("CALL_STATUS_IN_PROGRESS", True, call["id"]),
        ("CALL_STATUS_COMPLETED", True, call["id"]),
    ]
    assert lines[-1]["result"]["call"]["status"] == "CALL_STATUS_COMPLETED"
    # int64 in JSON is a string (proto3 JSON mapping); resuming after the first misses nothing.
    sequences = [e["sequence"] for e in events]
    assert all(isinstance(s, str) for s in sequences)
    resumed = await asyncio.wait_for(read_watch(hub, 2, after_sequence=sequences[0]), 10)
    assert [line["result"]["event"]["sequence"] for line in resumed] == sequences[1:]
    # A bad watch fails before the stream starts: an ordinary JSON error.
    status, body, _ = await rest(hub, "GET", "/v1/calls:watch", params={"after_sequence": "-1"})
    assert status == 400
    assert field_error(body)[:2] == (400, "INVALID_ARGUMENT")
    assert "after_sequence" in field_error(body)[4]


@pytest.mark.parametrize(
    ("method", "path", "payload", "field"),
    [
        ("POST", "/v1/calls", media_body(to="4155552671"), "to"),
        ("POST", "/v1/calls", media_body(**{"from": "+1 (415) abc"}), "from"),
        ("POST", "/v1/calls", media_body(credential=""), "credential"),
        ("POST", "/v1/calls", {k: v for k, v in media_body().items() if k != "action"}, "action"),
        ("POST", "/v1/calls", media_body(action={"say": {"text": " "}}), "action.say.text"),
        ("POST", "/v1/calls", media_body(ring_timeout="2s"), "ring_timeout"),
        ("POST", "/v1/calls", media_body(metadata={"no spaces": "x"}), "metadata"),
        ("POST", "/v1/calls", media_body(ringing="30s"), "body"),  # no such field
        ("POST", "/v1/calls", b"{not json", "body"),
        ("POST", "/v1/calls?credential=phone", media_body(), "credential"),  # query with body "*"
        ("GET", "/v1/calls?page_size=5000", None, "page_size"),
        ("GET", "/v1/calls?page_token=%25%25%25", None, "page_token"),
        ("GET", "/v1/calls?status=CALL_STATUS_NOPE", None, "status"),
    ],
)
async def test_bad_requests_are_400_naming_the_field(
    hub: HubUnderTest, vonage: FakeVonage, method: str, path: str, payload: object, field: str
) -> None:
    kwargs: dict[str, Any] = {}
    if isinstance(payload, bytes):
        kwargs = {"data": payload, "headers": {"Content-Type": "application/json"}}
    elif payload is not None:
        kwargs = {"json": payload}
    headers = {**hub.headers(hub.tokens.invoke_only), **kwargs.pop("headers", {})}
    async with hub.http.request(method, hub.http_base + path, headers=headers, **kwargs) as response:
        assert response.status == 400
        assert response.content_type == "application/json"
        body = await response.json()
    code, status, reason, named, message = field_error(body)
    assert (code, status) == (400, "INVALID_ARGUMENT")
    assert (reason, named) == ("INVALID_FIELD", field), body
    assert message.startswith(f"{field}:"), message
    if isinstance(payload, dict) and "ringing" in payload:
        assert "ringing" in message  # the unknown field is named
    assert vonage.requests == []  # refused before any provider is called
    status, listed, _ = await rest(hub, "GET", "/v1/calls")
    assert listed["calls"] == []


async def test_auth_and_unknown_calls_over_rest(hub: HubUnderTest, vonage: FakeVonage) -> None:
    call = await place(hub)
    status, body, _ = await rest(hub, "GET", f"/v1/calls/{call['id']}", token="")
    assert (status, body["error"]["status"]) == (401, "UNAUTHENTICATED")
    status, body, _ = await rest(hub, "GET", f"/v1/calls/{call['id']}", token=hub.tokens.other_tenant)
    assert (status, field_error(body)[2]) == (404, "CALL_NOT_FOUND")
    status, body, _ = await rest(hub, "POST", "/v1/calls/nope:hangup", json={})
    assert (status, field_error(body)[2]) == (404, "CALL_NOT_FOUND")
    status, body, _ = await rest(hub, "DELETE", f"/v1/calls/{call['id']}")
    assert status in (404, 405, 501)
    assert body["error"]["details"][0]["reason"] == "ROUTE_NOT_FOUND"


@pytest.mark.parametrize(
    ("kind", "http_status", "reason", "words"),
    [
        ("bad_number", 400, "PROVIDER_INVALID_REQUEST", "to[0].number"),
        ("unauthorized", 401, "PROVIDER_AUTH_FAILED", "correct credentials"),
        ("forbidden", 403, "PROVIDER_PERMISSION_DENIED", "permission"),
        ("rate_limited", 429, "PROVIDER_RATE_LIMITED", "Rate Limit"),
        ("down", 503, "PROVIDER_UNAVAILABLE", "temporarily unavailable"),
        ("reset", 503, "CALL_OUTCOME_UNKNOWN", "not retried"),
    ],
)
async def test_provider_errors_over_rest(
    hub: HubUnderTest, vonage: FakeVonage, kind: str, http_status: int, reason: str, words: str
) -> None:
    vonage.fail_next(kind)
    status, body, response = await rest(hub, "POST", "/v1/calls", json=media_body())
    assert status == http_status, body
    _, _, found, _, message = field_error(body)
    assert found == reason
    assert words in message
    if kind == "rate_limited":
        assert response.headers["Retry-After"] == vonage.retry_after
        retry = next(d for d in body["error"]["details"] if d["@type"].endswith("RetryInfo"))
        assert retry["retry_delay"] == f"{float(vonage.retry_after):.3f}s"
    assert vonage.signature_secret not in json.dumps(body)
