"""STT and STREAM_STT: Deepgram's prerecorded API (SDK) and its live websocket (aiohttp).

Prerecorded: POST {base}/v1/listen through deepgram-sdk (`listen.v1.media.transcribe_file`
with the audio as the body, or `transcribe_url` with `{"url": ...}`).

Live: wss://{host}/v1/listen, spoken directly over the pooled aiohttp session rather
than through the SDK's `listen.v1.connect`, because that one
- rides on `websockets.legacy` (deprecated, and it warns on import);
- turns a refused upgrade into an ApiError with a fixed text, dropping Deepgram's
  `dg-error` message and the Retry-After of a 429;
- closes through a closing handshake that may wait out websockets' default 10 s
  close timeout, which it does not expose, where a cancelled stream must let go of
  the connection at once;
- builds a pydantic model of every message (about 120 us per Results against 5 us
  for orjson, measured), on the hottest path of a live call.
The protocol itself is small: binary frames of audio up, `KeepAlive` while the client
pauses, `CloseStream` at half-close; Results / UtteranceEnd / SpeechStarted / Metadata
down, then a close frame (1000, or 1008/1011 with Deepgram's error code as the reason).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
import orjson

from callers import pools
from callers.base import ProviderTimeout, ProviderUnavailable, SecretFields
from callers.deepgram import client, convert, errors
from callers.types import (
    StreamTranscribeEnd,
    StreamTranscribeEvent,
    StreamTranscribeRequest,
    TranscribeRequest,
    TranscribeResponse,
)
from callers.types.speech import TranscriptEvent

# Deepgram closes a stream that received no audio for 10 s (NET-0001); a KeepAlive
# goes up when the client has sent nothing for this long.
KEEPALIVE_SECONDS = 5.0
# Deepgram's advice is 20-250 ms of audio per message; a larger chunk from the
# client is sent in pieces of at most this (1 s of 16 kHz linear16).
MAX_FRAME_BYTES = 32_000
_CLOSE_STREAM = '{"type":"CloseStream"}'
_KEEPALIVE = '{"type":"KeepAlive"}'
# After a stream ended or failed, how long the closing handshake may take at most.
_CLOSE_SECONDS = 1.0
_WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_CLOSE_SECONDS)
_MAX_MESSAGE = 16 * 1024 * 1024


class DeepgramTranscriber:
    async def transcribe(
        self, secret: SecretFields, options: Mapping[str, str], request: TranscribeRequest, *, timeout: float
    ) -> TranscribeResponse:
        call = convert.prerecorded(request)  # bad input is refused before the key is read
        where = client.target(options)
        media = client.sdk(where).listen.v1.media
        try:
            if call.url is not None:
                answer = await media.transcribe_url(
                    url=call.url,
                    **call.params,
                    request_options=client.request_options(secret, timeout, query=call.query),
                )
            else:
                answer = await media.transcribe_file(
                    request=call.body,
                    **call.params,
                    request_options=client.request_options(
                        secret, timeout, query=call.query, headers={"content-type": call.content_type}
                    ),
                )
        except errors.SDK_ERRORS as exc:
            raise errors.from_sdk(exc, where.host) from None
        return convert.transcribe_response(answer, request)

    async def stream_transcribe(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: StreamTranscribeRequest,
        audio: AsyncIterator[bytes],
        *,
        timeout: float,
    ) -> AsyncIterator[StreamTranscribeEvent]:
        where = client.target(options)
        url = f"{where.ws_base}/v1/listen?{urlencode(convert.live_query(request))}"
        session = pools.aiohttp_session(where.upstream)
        ws: aiohttp.ClientWebSocketResponse | None = None
        state = _Sending()
        tasks: list[asyncio.Task[None]] = []
        try:
            ws = await _connect(session, url, client.auth_header(secret), where.host, timeout)
            sender = asyncio.create_task(_send(ws, audio, state))
            tasks += [sender, asyncio.create_task(_keep_alive(ws, state))]
            events = convert.LiveEvents(punctuate=request.punctuate)
            last: TranscriptEvent | None = None
            while True:
                message = await _receive(ws, sender, where.host, timeout)
                if message.type is aiohttp.WSMsgType.TEXT:
                    try:
                        data = orjson.loads(message.data)
                    except orjson.JSONDecodeError:
                        raise ProviderUnavailable(f"{where.host} sent a message that is not JSON") from None
                    for event in events.feed(data):
                        if isinstance(event, TranscriptEvent):
                            last = event
                        yield event
                elif message.type is aiohttp.WSMsgType.BINARY:
                    continue
                else:
                    break
            code = ws.close_code
            reason = message.extra if message.type is aiohttp.WSMsgType.CLOSE else None
            if code != aiohttp.WSCloseCode.OK:
                if code is None or code == aiohttp.WSCloseCode.ABNORMAL_CLOSURE:
                    raise ProviderUnavailable(f"{where.host} dropped the connection mid-stream")
                raise errors.close_error(code, str(reason or ""), where.host)
            if not state.done:
                raise ProviderUnavailable(f"{where.host} ended the stream before the audio ended")
            duration = events.duration
            if duration is None and last is not None:
                duration = last.end
            yield StreamTranscribeEnd(duration=duration, request_id=events.request_id)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            if ws is not None and not ws.closed:
                # A receive cancelled mid-wait (or a failed one) leaves no closing handshake
                # to wait for: the close frame goes out and the connection is dropped.
                await ws.close()


@dataclass(slots=True)
class _Sending:
    last_sent: float = 0.0
    done: bool = False


async def _connect(
    session: aiohttp.ClientSession, url: str, authorization: str, host: str, timeout: float
) -> aiohttp.ClientWebSocketResponse:
    try:
        async with asyncio.timeout(timeout):
            return await session.ws_connect(
                url,
                headers={"Authorization": authorization},
                timeout=_WS_TIMEOUT,
                autoping=True,
                max_msg_size=_MAX_MESSAGE,
            )
    except aiohttp.WSServerHandshakeError as exc:
        raise errors.handshake_error(exc.status, exc.headers, host) from None
    except TimeoutError:
        raise ProviderTimeout(f"{host} did not accept the stream within {timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise ProviderUnavailable(f"could not reach {host} ({type(exc).__name__})") from None


async def _send(ws: aiohttp.ClientWebSocketResponse, audio: AsyncIterator[bytes], state: _Sending) -> None:
    """The client's audio up, then CloseStream. Should the connection go away, sending
    stops and the receiving side reports why (Deepgram's close frame says it)."""
    loop = asyncio.get_running_loop()
    state.last_sent = loop.time()
    async for chunk in audio:
        # Never an empty frame: Deepgram takes it for the end of the stream.
        for at in range(0, len(chunk), MAX_FRAME_BYTES):
            if not await _put(ws, chunk[at : at + MAX_FRAME_BYTES]):
                return
        if chunk:
            state.last_sent = loop.time()
    state.done = True
    await _put(ws, _CLOSE_STREAM)


async def _put(ws: aiohttp.ClientWebSocketResponse, data: bytes | str) -> bool:
    try:
        if isinstance(data, str):
            await ws.send_str(data)
        else:
            await ws.send_bytes(data)
    except (aiohttp.ClientError, ConnectionError):
        return False
    return True


async def _keep_alive(ws: aiohttp.ClientWebSocketResponse, state: _Sending) -> None:
    loop = asyncio.get_running_loop()
    while not state.done:
        idle = loop.time() - state.last_sent
        if idle >= KEEPALIVE_SECONDS:
            if not await _put(ws, _KEEPALIVE):
                return
            state.last_sent = loop.time()
            idle = 0.0
        await asyncio.sleep(KEEPALIVE_SECONDS - idle)


async def _receive(
    ws: aiohttp.ClientWebSocketResponse, sender: asyncio.Task[None], host: str, timeout: float
) -> aiohttp.WSMessage:
    """The next message. While the client still sends audio, a quiet provider is no
    timeout (the audio is the client's); after half-close each wait is bounded."""
    if sender.done():
        if not sender.cancelled() and sender.exception() is not None:
            sender.result()  # raises the client's audio iterator's own error
        try:
            return await ws.receive(timeout=timeout)
        except TimeoutError:
            raise ProviderTimeout(
                f"{host} sent nothing within {timeout:g} s of the end of the audio"
            ) from None
    receiving = asyncio.ensure_future(ws.receive())
    try:
        await asyncio.wait((receiving, sender), return_when=asyncio.FIRST_COMPLETED)
        if not receiving.done() and not sender.cancelled() and sender.exception() is not None:
            sender.result()  # raises the client's audio iterator's own error
        if not receiving.done():
            done, _ = await asyncio.wait((receiving,), timeout=timeout)
            if not done:
                raise ProviderTimeout(f"{host} sent nothing within {timeout:g} s of the end of the audio")
        return receiving.result()
    finally:
        if not receiving.done():
            receiving.cancel()
            with contextlib.suppress(BaseException):
                await receiving


CALLER = DeepgramTranscriber()
