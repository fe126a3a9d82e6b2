"""The agent end of a call's media: the CallMedia gRPC stream.

The first message is the config (the call, a sample rate); the call must be the
tenant's, placed with a media_stream action and not ended. The stream then waits for
the provider's end to connect (the call being answered), polling for its socket, and
ends with a stop if the call ends first. Once attached, requests (audio, marks, clear)
go to the provider end and its events (start, audio, DTMF, marks played, stop) come
back, until either side ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
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
        reader, writer = connection
        link.write_frame(writer, Kind.HELLO, orjson.dumps({"sample_rate_hz": config.sample_rate_hz}))
        pump = asyncio.create_task(self._pump(requests, writer), name=f"media-agent-{row.id}")
        failures: list[BaseException] = []

        def pump_done(task: asyncio.Task[None]) -> None:
            # A bad request message ends the RPC with its error: wake the reader to raise it.
            if not task.cancelled() and task.exception() is not None:
                failures.append(task.exception())  # type: ignore[arg-type]
                reader.feed_eof()

        pump.add_done_callback(pump_done)
        try:
            async for response in self._responses(reader, failures):
                yield response
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, link.LinkClosed, ConnectionError):
                await pump
            writer.close()

    async def _attach(
        self, call_id: str, call: CallContext
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The link to the provider's end, once it is there; None when the call ended first."""
        next_check = time.monotonic() + STATUS_POLL_SECONDS
        while True:
            connection = await link.connect(self._media_dir, call_id)
            if connection is not None:
                return connection
            if time.monotonic() >= next_check:
                row = await self._store.get_call(call.principal.tenant_id, call_id)
                if row is None or t.CallStatus(row.status).terminal:
                    return None
                next_check = time.monotonic() + STATUS_POLL_SECONDS
            await asyncio.sleep(link.ATTACH_POLL_SECONDS)

    @staticmethod
    async def _pump(requests: AsyncIterator[pb.CallMediaRequest], writer: asyncio.StreamWriter) -> None:
        async for request in requests:
            which = request.WhichOneof("message")
            if which == "audio":
                if len(request.audio) % 2:
                    raise invalid_field("audio", "linear16 audio is whole 2-byte samples")
                link.write_frame(writer, Kind.PLAY, request.audio)
            elif which == "mark":
                link.write_frame(writer, Kind.PLAY_MARK, request.mark.encode())
            elif which == "clear":
                link.write_frame(writer, Kind.CLEAR)
            elif which == "config":
                raise invalid_field("config", "only the first message may be the config")
            await writer.drain()  # back-pressure from the provider end's bounded queue

    @staticmethod
    async def _responses(
        reader: asyncio.StreamReader, failures: list[BaseException]
    ) -> AsyncIterator[pb.CallMediaResponse]:
        while True:
            try:
                frame = await link.read_frame(reader)
            except link.LinkClosed:
                if failures:
                    raise failures[0] from None
                yield pb.CallMediaResponse(stop=pb.MediaStopped(reason="provider"))
                return
            if frame.kind is Kind.AUDIO:
                yield pb.CallMediaResponse(audio=frame.payload)
            elif frame.kind is Kind.START:
                start = orjson.loads(frame.payload)
                started = pb.MediaStarted(
                    call_id=start["call_id"],
                    provider_call_id=start["provider_call_id"],
                    to=start["to"],
                    parameters=start["parameters"],
                )
                setattr(started, "from", start["from"])
                yield pb.CallMediaResponse(start=started)
            elif frame.kind is Kind.DTMF:
                yield pb.CallMediaResponse(dtmf=frame.payload.decode())
            elif frame.kind is Kind.MARK:
                yield pb.CallMediaResponse(mark=frame.payload.decode())
            elif frame.kind is Kind.STOP:
                yield pb.CallMediaResponse(stop=pb.MediaStopped(reason=orjson.loads(frame.payload)["reason"]))
                return
            elif frame.kind is Kind.REFUSED:
                raise HubError(
                    grpc.StatusCode.FAILED_PRECONDITION, "CALL_MEDIA_ATTACHED", frame.payload.decode()
                )
