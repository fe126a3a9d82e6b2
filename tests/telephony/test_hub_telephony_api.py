"""The TelephonyService's own checks, whatever the provider: every bad request is a clear
INVALID_ARGUMENT (or NOT_FOUND) before any provider is called, another tenant sees
nothing, and the public webhook endpoints refuse what they cannot authenticate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from integration_hub.v1 import credentials_pb2 as cpb
from integration_hub.v1 import telephony_pb2 as pb
from integration_hub.v1 import telephony_pb2_grpc
from tests.harness import HubUnderTest, free_port, running_hub, settings_for

TO, FROM = "+14155552671", "+14155550199"


@pytest.fixture
async def phone_hub(tmp_path: Path) -> AsyncIterator[HubUnderTest]:
    port = free_port()
    settings = settings_for(
        tmp_path, database_url=None, http_port=port, public_url=f"http://127.0.0.1:{port}"
    )
    async with running_hub(settings) as hub:
        await hub.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(
                provider="twilio",
                name="phone",
                secret={"auth_token": "0123456789abcdef0123456789abcdef"},
                options={"account_sid": "AC" + "0" * 32},
            ),
            metadata=hub.auth(hub.tokens.admin),
        )
        await hub.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(provider="openai", name="llm", secret={"api_key": "sk-test-0000"}),
            metadata=hub.auth(hub.tokens.admin),
        )
        yield hub


def stub(hub: HubUnderTest) -> telephony_pb2_grpc.TelephonyServiceStub:
    return telephony_pb2_grpc.TelephonyServiceStub(hub.channel)


def say(**overrides: object) -> pb.PlaceCallRequest:
    request = pb.PlaceCallRequest(
        credential="phone", to=TO, action=pb.CallAction(say=pb.SayAction(text="Hello"))
    )
    setattr(request, "from", FROM)
    for name, value in overrides.items():
        if isinstance(value, duration_pb2.Duration):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    return request


async def place_error(hub: HubUnderTest, request: pb.PlaceCallRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(hub).PlaceCall(request, metadata=hub.auth(hub.tokens.invoke_only))
    return caught.value


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"to": ""}, "to", "required"),
        ({"to": "4155552671"}, "to", "E.164"),
        ({"to": "+1415555"}, "to", "not a valid number"),
        ({"to": "+1 (415) abc"}, "to", "only digits"),
        ({"to": "+999 123"}, "to", "not a phone number"),
        ({"from": "0044"}, "from", "E.164"),
        ({"credential": ""}, "credential", "required"),
        ({"ring_timeout": duration_pb2.Duration(seconds=2)}, "ring_timeout", "from 5 to 600"),
        ({"time_limit": duration_pb2.Duration(seconds=100_000)}, "time_limit", "from 1 to 86400"),
        ({"idempotency_key": "x" * 200}, "idempotency_key", "at most 128"),
        ({"timeout": duration_pb2.Duration(seconds=3600)}, "timeout", "at most 60"),
    ],
)
async def test_bad_requests_name_the_field(
    phone_hub: HubUnderTest, overrides: dict[str, object], field: str, words: str
) -> None:
    error = await place_error(phone_hub, say(**overrides))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"{field}:")
    assert words in error.details()


@pytest.mark.parametrize(
    ("action", "field"),
    [
        (None, "action"),
        (pb.CallAction(say=pb.SayAction(text="  ")), "action.say.text"),
        (pb.CallAction(provider_instructions=" "), "action.provider_instructions"),
        (pb.CallAction(say=pb.SayAction(text="x" * 5001)), "action.say.text"),
        (
            pb.CallAction(media_stream=pb.MediaStreamAction(parameters={"bad key!": "v"})),
            "action.media_stream.parameters",
        ),
    ],
)
async def test_bad_actions_name_the_field(
    phone_hub: HubUnderTest, action: pb.CallAction | None, field: str
) -> None:
    request = say()
    request.ClearField("action")
    if action is not None:
        request.action.CopyFrom(action)
    error = await place_error(phone_hub, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"{field}:")


async def test_metadata_keys_are_checked(phone_hub: HubUnderTest) -> None:
    request = say()
    request.metadata["no spaces"] = "x"
    error = await place_error(phone_hub, request)
    assert error.details().startswith("metadata:")


async def test_credentials_that_cannot_call(phone_hub: HubUnderTest) -> None:
    missing = await place_error(phone_hub, say(credential="nope"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    llm = await place_error(phone_hub, say(credential="llm"))
    assert llm.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "telephony" in llm.details()
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await stub(phone_hub).PlaceCall(say(), metadata=phone_hub.auth(phone_hub.tokens.other_tenant))
    assert other.value.code() == grpc.StatusCode.NOT_FOUND
    # Nothing was stored for any of them.
    listed = await stub(phone_hub).ListCalls(
        pb.ListCallsRequest(), metadata=phone_hub.auth(phone_hub.tokens.admin)
    )
    assert list(listed.calls) == []


async def test_unknown_calls_and_bad_pages(phone_hub: HubUnderTest) -> None:
    auth = phone_hub.auth(phone_hub.tokens.admin)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub(phone_hub).GetCall(pb.GetCallRequest(call_id="nope"), metadata=auth)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as hangup:
        await stub(phone_hub).HangupCall(pb.HangupCallRequest(call_id="nope"), metadata=auth)
    assert hangup.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as size:
        await stub(phone_hub).ListCalls(pb.ListCallsRequest(page_size=5000), metadata=auth)
    assert size.value.details().startswith("page_size:")
    with pytest.raises(grpc.aio.AioRpcError) as token:
        await stub(phone_hub).ListCalls(pb.ListCallsRequest(page_token="%%%"), metadata=auth)
    assert token.value.details().startswith("page_token:")


async def test_without_a_public_url_no_call_is_placed(tmp_path: Path) -> None:
    async with running_hub(settings_for(tmp_path, database_url=None)) as hub:
        await hub.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(
                provider="twilio",
                name="phone",
                secret={"auth_token": "0123456789abcdef0123456789abcdef"},
                options={"account_sid": "AC" + "0" * 32},
            ),
            metadata=hub.auth(hub.tokens.admin),
        )
        error = await place_error(hub, say())
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "HUB_PUBLIC_URL" in error.details()


async def test_webhooks_refuse_unknown_calls_and_big_bodies(phone_hub: HubUnderTest) -> None:
    url = f"{phone_hub.http_base}/telephony/v1/calls/nope/not-the-token/events"
    async with phone_hub.http.post(url, data={"CallStatus": "completed"}) as response:
        assert response.status == 403
        assert "unknown call or wrong token" in await response.text()
    async with phone_hub.http.post(url, data=b"x" * (65 * 1024)) as response:
        assert response.status == 413
    async with phone_hub.http.get(url.replace("/events", "/answer")) as response:
        assert response.status == 403


async def test_unknown_campaigns(phone_hub: HubUnderTest) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(phone_hub).GetCampaign(
            pb.GetCampaignRequest(campaign_id="c"), metadata=phone_hub.auth(phone_hub.tokens.admin)
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_campaign_keys_are_reserved(phone_hub: HubUnderTest) -> None:
    error = await place_error(phone_hub, say(idempotency_key="campaign:x:1:1"))
    assert error.details().startswith("idempotency_key:")
