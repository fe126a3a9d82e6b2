"""The agent end of a call's media: the CallMedia gRPC stream.

The first message is the config (the call, a sample rate); the call must be the
tenant's, placed with a media_stream action and not ended. The stream then waits for
the provider's end to connect (the call being answered): on a doorbell socket the
provider end rings when it listens (media_link), so a waiting stream costs nothing but
a re-read of its call's row every STATUS_POLL_SECONDS, and ends with a stop if the call
ends first. Once attached, requests (audio, marks, clear) go to the provider end and its
events (start, audio, DTMF, marks played, stop) come back, until either side ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import orjson

from callers import types as t
from integration_hub.errors import HubError, invalid_field
from integration_hub.rpc import CallContext
from integration_hub.store.base import Store
from integration_hub.telephony import media_link as link
from integration_hub.telephony.media_link import Kind
from integration_hub.v1 import telephony_pb2 as pb

RATES = (8000, 16000, 24000, 48000)
# While waiting for the provider's end, the call's row is re-read this often (has it ended?).
STATUS_POLL_SECONDS = 1.0


async def _config(requests: AsyncIterator[pb.CallMediaRequest]) -> pb.CallMediaConfig:
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        raise invalid_field("config", "required: the first message of CallMedia is its config") from None
    if first.WhichOneof("message") != "config":
        raise invalid_field("config", "required: the first message of CallMedia is its config")
    config = first.config
    if not config.call_id:
        raise invalid_field("config.call_id", "required")
    if config.sample_rate_hz not in RATES:
        raise invalid_field("config.sample_rate_hz", f"must be one of {', '.join(map(str, RATES))}")
    return config


class CallMediaStreams:
    def __init__(self, store: Store, media_dir: str) -> None:
        self._store = store
        self._media_dir = media_dir

    async def serve(
        self, requests: AsyncIterator[pb.CallMediaRequest], call: CallContext
    ) -> AsyncIterator[pb.CallMediaResponse]:
        config = await _config(requests)
        row = await self._store.get_call(call.principal.tenant_id, config.call_id)
        if row is None:
            raise HubError(
                grpc.StatusCode.NOT_FOUND, "CALL_NOT_FOUND", f"no call {config.call_id!r} in this tenant"
            )
        if row.action.get("kind") != t.CallActionKind.MEDIA_STREAM.value:
            raise HubError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "CALL_HAS_NO_MEDIA",
                f"call {row.id!r} was not placed with a media_stream action",
            )
        connection = await self._attach(row.id, call)
        if connection is None:
            yield pb.CallMediaResponse(stop=pb.MediaStopped(reason="hangup"))
            return
        frames, out = connection
        out.send(Kind.HELLO, orjson.dumps({"sample_rate_hz": config.sample_rate_hz}))
        pump = asyncio.create_task(self._pump(requests, out), name=f"media-agent-{row.id}")
        failures: list[BaseException] = []

        def pump_done(task: asyncio.Task[None]) -> None:
            # A bad request message ends the RPC with its error: wake the reader to raise it.
            if not task.cancelled() and task.exception() is not None:
                failures.append(task.exception())  # type: ignore[arg-type]
                frames.abort()

        pump.add_done_callback(pump_done)
        try:
            async for response in self._responses(frames, failures):
                yield response
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, link.LinkClosed, ConnectionError):
                await pump
            out.close()

    async def _attach(self, call_id: str, call: CallContext) -> tuple[link.LinkIn, link.LinkOut] | None:
        """The link to the provider's end, once it is there; None when the call ended first."""
        connection = await link.connect(self._media_dir, call_id)
        if connection is not None:  # answered already: no doorbell needed
            return connection
        # The doorbell first, then a look for the provider end (media_link: one of the two
        # ends always sees the other).
        doorbell = await link.Doorbell.open(self._media_dir, call_id)
        try:
            while True:
                connection = await link.connect(self._media_dir, call_id)
                if connection is not None:
                    return connection
                if not await doorbell.wait(STATUS_POLL_SECONDS):
                    row = await self._store.get_call(call.principal.tenant_id, call_id)
                    if row is None or t.CallStatus(row.status).terminal:
                        return None
        finally:
            doorbell.close()

    @staticmethod
    async def _pump(requests: AsyncIterator[pb.CallMediaRequest], out: link.LinkOut) -> None:
        async for request in requests:
            which = request.WhichOneof("message")
            if which == "audio":
                if len(request.audio) % 2:
                    raise invalid_field("audio", "linear16 audio is whole 2-byte samples")
                out.send(Kind.PLAY, request.audio)
            elif which == "mark":
                out.send(Kind.PLAY_MARK, request.mark.encode())
            elif which == "clear":
                out.send(Kind.CLEAR)
            elif which == "config":
                raise invalid_field("config", "only the first message may be the config")
            await out.drain()  # back-pressure from the provider end's bounded queue

    @staticmethod
    async def _responses(
        frames: link.LinkIn, failures: list[BaseException]
    ) -> AsyncIterator[pb.CallMediaResponse]:
        """The provider end's frames as responses, one each: CallMediaResponse.audio is 20 ms
        frames, so frames read together in one batch are still answered one by one."""
        while True:
            try:
                batch = await frames.frames()
            except link.LinkClosed:
                if failures:
                    raise failures[0] from None
                yield pb.CallMediaResponse(stop=pb.MediaStopped(reason="provider"))
                return
            for frame in batch:
                response = _response(frame)
                if response is None:
                    continue
                yield response
                if frame.kind is Kind.STOP:
                    return


def _response(frame: link.Frame) -> pb.CallMediaResponse | None:
    """One link frame as a response (None for a kind the agent is not sent); REFUSED raises."""
    kind = frame.kind
    if kind is Kind.AUDIO:
        return pb.CallMediaResponse(audio=frame.payload)
    if kind is Kind.START:
        start = orjson.loads(frame.payload)
        started = pb.MediaStarted(
            call_id=start["call_id"],
            provider_call_id=start["provider_call_id"],
            to=start["to"],
            parameters=start["parameters"],
        )
        setattr(started, "from", start["from"])
        return pb.CallMediaResponse(start=started)
    if kind is Kind.DTMF:
        return pb.CallMediaResponse(dtmf=frame.payload.decode())
    if kind is Kind.MARK:
        return pb.CallMediaResponse(mark=frame.payload.decode())
    if kind is Kind.STOP:
        return pb.CallMediaResponse(stop=pb.MediaStopped(reason=orjson.loads(frame.payload)["reason"]))
    if kind is Kind.REFUSED:
        raise HubError(grpc.StatusCode.FAILED_PRECONDITION, "CALL_MEDIA_ATTACHED", frame.payload.decode())
    return None
