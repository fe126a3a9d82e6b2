"""STREAM_TTS_INPUT: text fragments in as an LLM writes them, audio out, over ElevenLabs's
stream-input websocket: {base as ws(s)}/v1/text-to-speech/{voice_id}/stream-input
?model_id=..&output_format=..[&language_code=..][&inactivity_timeout=..].

Spoken directly over the pooled aiohttp session's `ws_connect` rather than through the
SDK: the SDK's helper (`ElevenLabs().text_to_speech.convert_realtime`) is synchronous,
built on websockets.sync, on the sync client only, and polls with 10 ms receive
timeouts; it has no flush, no cancellation and no async form. aiohttp is the hub's own
HTTP client (no extra dependency), the pooled session ignores proxies from the
environment and keeps no cookies, and the connect bound of the call applies.

The wire (the SDK's InitializeConnection / SendText / CloseConnection / AudioOutput /
FinalOutput types):
- the key goes in the `xi-api-key` header of the handshake (never in a message);
- first message {"text": " ", "voice_settings": {...}?, "generation_config": {...}?};
- then {"text": "<whole words> ", "try_trigger_generation": true} per fragment: text
  is sent up to its last whitespace and always ends with one space, as ElevenLabs asks,
  so that a word an LLM split over two fragments ("Hel", "lo ") is sent whole;
- FLUSH: {"text": "<held-back tail> ", "flush": true}: ElevenLabs generates what it has
  buffered without waiting for its chunk schedule;
- end of text: the tail with flush, then {"text": ""}; ElevenLabs answers the rest
  and {"isFinal": true}, and closes;
- answers {"audio": "<base64>", "isFinal": null|false, "normalizedAlignment": ..,
  "alignment": ..}; errors {"message", "error", "code"} then a close frame.

Each audio message is yielded as it arrives, decoded, in the asked format (every
format the websocket is asked for is native, see callers.elevenlabs.convert).

`timeout` bounds connecting, and each wait for audio that ElevenLabs owes us (text sent
and flushed, or the end sent): a pause of the LLM is not a silence of the provider
(ElevenLabs's own inactivity_timeout, 20 s by default, bounds that on its side). When the
consumer stops iterating, the generator's `finally` cancels the sender and sends the
close frame at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from callers import pools
from callers.base import InvalidRequest, ProviderTimeout, ProviderUnavailable, SecretFields
from callers.elevenlabs import client, convert, errors
from callers.types import AudioChunk, Flush, SynthesizeRequest, TextInput

# Waiting for ElevenLabs's answer to our close frame; the frame itself goes out at once.
_CLOSE_WAIT = 0.5
_MAX_MESSAGE = 16 * 1024 * 1024


class _Words:
    """Cuts streamed text at its last whitespace, so that every message carries whole words."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = ""

    def feed(self, fragment: str) -> str | None:
        text = self._tail + fragment
        cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t"))
        if cut < 0:
            self._tail = text
            return None
        self._tail = text[cut + 1 :]
        head = text[: cut + 1].strip()
        return f"{head} " if head else None

    def rest(self) -> str:
        text, self._tail = self._tail.strip(), ""
        return f"{text} " if text else " "


class _Sender:
    """Sends the text as it comes; knows whether ElevenLabs owes us audio."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, text: AsyncIterator[TextInput]) -> None:
        self.ws = ws
        self.text = text
        self.ended = False  # {"text": ""} was sent
        self.gone = False  # the websocket closed under us while sending
        self.owed_since: float | None = None  # audio is owed since (text flushed, or end)
        self._unflushed = False

    async def _send(self, message: Mapping[str, Any]) -> None:
        await self.ws.send_str(orjson.dumps(message).decode())

    async def run(self) -> None:
        words = _Words()
        try:
            async for item in self.text:
                if isinstance(item, Flush):
                    await self._send({"text": words.rest(), "flush": True})
                    if self._unflushed:
                        self._owe()
                    continue
                if not isinstance(item, str):
                    raise InvalidRequest(f"text: a fragment is {type(item).__name__}, not text or FLUSH")
                chunk = words.feed(item)
                if chunk is not None:
                    await self._send({"text": chunk, "try_trigger_generation": True})
                if item.strip():
                    self._unflushed = True
            await self._send({"text": words.rest(), "flush": True})
            await self._send({"text": ""})
            self.ended = True
            self._owe()
        except (ConnectionError, aiohttp.ClientError):
            # The websocket closed under us; the receiver reports why.
            self.gone = True

    def _owe(self) -> None:
        self._unflushed = False
        if self.owed_since is None:
            self.owed_since = time.monotonic()

    def paid(self) -> None:
        self.owed_since = None


async def _connect(
    session: aiohttp.ClientSession, url: str, key: str, timeout: float, where: str
) -> aiohttp.ClientWebSocketResponse:
    try:
        async with asyncio.timeout(timeout):
            return await session.ws_connect(
                url,
                headers={client.KEY_HEADER: key},
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=_CLOSE_WAIT),
                autoclose=True,
                autoping=True,
                max_msg_size=_MAX_MESSAGE,
            )
    except TimeoutError:
        raise ProviderTimeout(
            f"{where} did not open the stream-input websocket within {timeout:g} s"
        ) from None
    except aiohttp.WSServerHandshakeError as exc:
        raise errors.handshake_error(exc.status, exc.headers) from None
    except aiohttp.ClientError as exc:
        raise ProviderUnavailable(f"could not reach {where} ({type(exc).__name__})") from None


async def stream_input(
    secret: SecretFields,
    options: Mapping[str, str],
    request: SynthesizeRequest,
    text: AsyncIterator[TextInput],
    *,
    timeout: float,
) -> AsyncIterator[AudioChunk]:
    output = convert.output_for(request.output_format, stream=True)
    voice = client.voice_id(request.voice)
    setup = convert.websocket_setup(request, output)
    url = client.websocket_url(options, f"/v1/text-to-speech/{voice}/stream-input", setup.query)
    where = client.host(options)
    key = client.key(secret)
    session = pools.aiohttp_session(client.upstream(client.base_url(options)))
    ws = await _connect(session, url, key, timeout, where)
    sender: asyncio.Task[None] | None = None
    receiving: asyncio.Task[aiohttp.WSMessage] | None = None
    try:
        try:
            await ws.send_str(orjson.dumps(setup.first_message).decode())
        except (ConnectionError, aiohttp.ClientError):
            raise ProviderUnavailable(f"{where} closed the stream-input websocket at once") from None
        feeder = _Sender(ws, text)
        sender = asyncio.create_task(feeder.run(), name="elevenlabs-stream-input-sender")
        while True:
            if receiving is None:
                receiving = asyncio.ensure_future(ws.receive())
            waits: set[asyncio.Future[Any]] = {receiving}
            if not sender.done():
                waits.add(sender)
            wait = timeout
            if feeder.owed_since is not None:
                wait = max(0.0, feeder.owed_since + timeout - time.monotonic())
            done, _ = await asyncio.wait(waits, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if sender in done:
                sender.result()  # the text iterator's own error, as it is
            if receiving not in done:
                owed = feeder.owed_since
                if owed is not None and time.monotonic() - owed >= timeout:
                    raise ProviderTimeout(f"{where} sent no audio within {timeout:g} s of the text")
                continue
            message = receiving.result()
            receiving = None
            if message.type is aiohttp.WSMsgType.TEXT:
                data = _json(message.data, where)
                if data.get("audio"):
                    feeder.paid()
                    yield AudioChunk(audio=_audio(data["audio"], where))
                if data.get("isFinal") is True:
                    yield AudioChunk(audio=b"", is_last=True)
                    return
                if "error" in data or ("message" in data and "audio" not in data):
                    raise errors.websocket_message_error(data, key=key)
            elif message.type is aiohttp.WSMsgType.BINARY:
                raise ProviderUnavailable(f"{where} sent a binary websocket message; expected JSON text")
            elif message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                code = ws.close_code
                if feeder.ended and code == aiohttp.WSCloseCode.OK:
                    # Closed normally after the end of the text, without an isFinal message.
                    yield AudioChunk(audio=b"", is_last=True)
                    return
                reason = message.extra if isinstance(message.extra, str) else ""
                raise errors.websocket_close_error(code, reason, key=key)
            elif message.type is aiohttp.WSMsgType.ERROR:
                raise ProviderUnavailable(f"the websocket to {where} failed ({type(message.data).__name__})")
    finally:
        for task in (sender, receiving):
            if task is not None and not task.done():
                task.cancel()
        for task in (sender, receiving):
            if task is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await task
        await ws.close()


def _json(raw: str, where: str) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProviderUnavailable(f"{where} sent a websocket message that is not JSON") from None
    if not isinstance(data, dict):
        raise ProviderUnavailable(f"{where} sent a websocket message that is not a JSON object")
    return data


def _audio(encoded: object, where: str) -> bytes:
    if not isinstance(encoded, str):
        raise ProviderUnavailable(f"{where} sent audio that is not base64 text")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderUnavailable(f"{where} sent audio that is not valid base64") from None
