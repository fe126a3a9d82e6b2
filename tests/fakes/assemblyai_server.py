"""A real HTTP + websocket server on 127.0.0.1 speaking AssemblyAI's wire.

REST (v2), every route checking the bare `Authorization: <key>` header (no "Bearer"),
errors as the HTTP status with JSON {"error": "..."}:
- POST /v2/upload: the raw audio as the body -> {"upload_url": "https://cdn.assemblyai.com/upload/<id>"};
- POST /v2/transcript: JSON {audio_url, speech_models, language_code | language_detection,
  punctuate, format_text, speaker_labels, keyterms_prompt, ...} -> {id, status: "queued", ...};
  audio_url is an uploaded file or one of `fake.remote_files` (else the transcript fails
  with a download error, as AssemblyAI's does);
- GET /v2/transcript/{id}: "queued", then "processing" for `polls_until_done` polls, then
  "completed" (text, words in ms, language_code, audio_duration in s, confidence) or
  "error" (audio PyAV cannot decode, a download error, or `fake.fail_with`);
- GET /v2/transcript?limit=N: the transcript list (what verify calls).
The transcript is `SCRIPT`, its words spread evenly over the audio's real duration, which
the fake measures by decoding the file with PyAV (independently of callers.audio).

Streaming (v3): GET /v3/ws?sample_rate=..&encoding=pcm_s16le|pcm_mulaw&format_turns=..
&min_turn_silence=..&keyterms_prompt=[..]&speech_model=.. upgraded to a websocket. It sends
Begin, then as audio arrives one word of SCRIPT per `word_seconds` of audio: an interim Turn
per new word, and after `words_per_turn` words the end of the turn (end_of_turn=true,
unformatted, then formatted when format_turns=true). A binary message outside 50-1000 ms
of audio closes the session with 3007, as AssemblyAI does. {"type": "Terminate"} ends the
current turn, sends Termination (audio_duration_seconds) and closes with 1000.
Failure knobs: `stream_reject_status` (HTTP status at the handshake), `stream_close_code`
(+ reason; right after Begin, or after `stream_close_after` audio messages),
`stream_error` (an Error message), `stream_hang` (never send Begin), `stream_stall` (never
answer Terminate), `speech_started` (send SpeechStarted messages, as Universal-3 Pro does).
Every session is recorded (query, headers, audio bytes, client JSON messages) with the
`time.monotonic()` at which its connection ended (`closed_at`).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import av
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

SCRIPT = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "speech",
    "to",
    "text",
    "one",
    "two",
    "three",
]
AUTH_ERROR = "Authentication error, API token missing/invalid"
SPEECH_MODELS = {"universal-3-pro", "universal-2", "universal-3-5-pro", "slam-1", "universal", "best", "nano"}
LANGUAGE_CODES = {
    "en",
    "en_us",
    "en_uk",
    "en_au",
    "de",
    "de_ch",
    "es",
    "fr",
    "it",
    "pt",
    "nl",
    "ja",
    "hi",
    "zh",
}
STREAM_MODELS = {"universal-streaming-english", "universal-streaming-multilingual", "u3-rt-pro"}
UPLOAD_PREFIX = "https://cdn.assemblyai.com/upload/"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes
    at: float  # time.monotonic()

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(slots=True)
class StreamSession:
    query: dict[str, str]
    headers: CIMultiDict[str]
    audio: bytearray = field(default_factory=bytearray)
    chunk_ms: list[float] = field(default_factory=list)
    client_messages: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    closed_at: float | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


def audio_seconds(data: bytes) -> float:
    """The duration of an audio file, decoded by PyAV; ValueError when it holds no audio."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise ValueError("no audio stream")
            samples, rate = 0, 0
            for frame in container.decode(audio=0):
                samples += frame.samples
                rate = frame.sample_rate
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None
    if not rate or not samples:
        raise ValueError("no audio samples")
    return samples / rate


def words_over(duration: float, *, speakers: bool) -> list[dict[str, Any]]:
    step = duration / len(SCRIPT)
    words = []
    for i, text in enumerate(SCRIPT):
        word: dict[str, Any] = {
            "text": text.capitalize() if i == 0 else text,
            "start": round(i * step * 1000),
            "end": round((i + 1) * step * 1000),
            "confidence": 0.9,
            "speaker": ("A" if i < len(SCRIPT) // 2 else "B") if speakers else None,
        }
        words.append(word)
    return words


class FakeAssemblyAI:
    def __init__(
        self,
        valid_keys: Collection[str],
        *,
        polls_until_done: int = 2,
        word_seconds: float = 0.3,
        words_per_turn: int = 4,
    ) -> None:
        self.valid_keys = set(valid_keys)
        self.polls_until_done = polls_until_done
        self.word_seconds = word_seconds
        self.words_per_turn = words_per_turn
        # REST knobs
        self.force_status: int | None = None
        self.retry_after: str | None = None
        self.error_text = "forced error"
        self.delay = 0.0
        self.never_complete = False
        self.fail_with: str | None = None
        self.remote_files: dict[str, bytes] = {}
        # streaming knobs
        self.stream_reject_status: int | None = None
        self.stream_close_code: int | None = None
        self.stream_close_reason = ""
        self.stream_close_after: int | None = None
        self.stream_error: tuple[int, str] | None = None
        self.stream_hang = False
        self.stream_stall = False
        self.speech_started = False
        # records
        self.requests: list[RecordedRequest] = []
        self.uploads: dict[str, bytes] = {}
        self.transcripts: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.sessions: list[StreamSession] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def streaming_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def options(self) -> dict[str, str]:
        return {"base_url": self.base_url, "streaming_url": self.streaming_url}

    async def __aenter__(self) -> FakeAssemblyAI:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v2/upload", self._upload)
        app.router.add_post("/v2/transcript", self._create)
        app.router.add_get("/v2/transcript", self._list)
        app.router.add_get("/v2/transcript/{id}", self._get)
        app.router.add_get("/v3/ws", self._stream)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- REST ---------------------------------------------------------------------

    async def _record(self, request: web.Request) -> web.Response | None:
        body = await request.read()
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                dict(request.query),
                CIMultiDict(request.headers),
                body,
                time.monotonic(),
            )
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.headers.get("Authorization") not in self.valid_keys:
            return web.json_response({"error": AUTH_ERROR}, status=401)
        if self.force_status is not None:
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return web.json_response({"error": self.error_text}, status=self.force_status, headers=headers)
        return None

    async def _upload(self, request: web.Request) -> web.Response:
        refused = await self._record(request)
        if refused is not None:
            return refused
        body = self.requests[-1].body
        if not body:
            return web.json_response({"error": "Upload failed: empty body"}, status=400)
        url = UPLOAD_PREFIX + uuid.uuid4().hex
        self.uploads[url] = body
        return web.json_response({"upload_url": url})

    async def _create(self, request: web.Request) -> web.Response:
        refused = await self._record(request)
        if refused is not None:
            return refused
        try:
            body = self.requests[-1].json()
        except ValueError:
            return web.json_response({"error": "Invalid JSON body"}, status=400)
        problem = self._check_transcript_request(body)
        if problem is not None:
            return web.json_response({"error": problem}, status=400)
        transcript_id = str(uuid.uuid4())
        state: dict[str, Any] = {
            "id": transcript_id,
            "status": "queued",
            "audio_url": body["audio_url"],
            "speech_models": body.get("speech_models"),
            "language_code": body.get("language_code"),
            "language_detection": body.get("language_detection"),
            "punctuate": body.get("punctuate"),
            "format_text": body.get("format_text"),
            "speaker_labels": body.get("speaker_labels"),
            "keyterms_prompt": body.get("keyterms_prompt"),
            "text": None,
            "words": None,
            "audio_duration": None,
            "confidence": None,
            "error": None,
        }
        self.transcripts[transcript_id] = state
        self.polls[transcript_id] = 0
        return web.json_response(state)

    def _check_transcript_request(self, body: Any) -> str | None:
        if not isinstance(body, dict) or not isinstance(body.get("audio_url"), str):
            return "audio_url is required"
        models = body.get("speech_models")
        if models is not None:
            if not isinstance(models, list) or not models:
                return "speech_models must be a non-empty list"
            unknown = [m for m in models if m not in SPEECH_MODELS]
            if unknown:
                return f"Invalid speech_models: {unknown[0]!r} is not a valid speech model"
        code = body.get("language_code")
        if code is not None and code not in LANGUAGE_CODES:
            return f"Unsupported language_code: {code}"
        if code is not None and body.get("language_detection"):
            return "language_code and language_detection cannot be used together"
        terms = body.get("keyterms_prompt")
        if terms is not None and not (isinstance(terms, list) and all(isinstance(t, str) for t in terms)):
            return "keyterms_prompt must be a list of strings"
        return None

    async def _get(self, request: web.Request) -> web.Response:
        refused = await self._record(request)
        if refused is not None:
            return refused
        transcript_id = request.match_info["id"]
        state = self.transcripts.get(transcript_id)
        if state is None:
            return web.json_response({"error": "Transcript not found"}, status=404)
        self.polls[transcript_id] += 1
        if state["status"] in ("queued", "processing"):
            if self.never_complete or self.polls[transcript_id] <= self.polls_until_done:
                state["status"] = "processing"
            else:
                self._finish(state)
        return web.json_response(state)

    def _finish(self, state: dict[str, Any]) -> None:
        url = state["audio_url"]
        data = self.uploads.get(url, self.remote_files.get(url))
        if self.fail_with is not None:
            state.update(status="error", error=self.fail_with)
            return
        if data is None:
            state.update(
                status="error",
                error=f"Download error, unable to download {url}. Please make sure the file exists "
                "and is accessible from the internet.",
            )
            return
        try:
            duration = audio_seconds(data)
        except ValueError:
            state.update(
                status="error",
                error="Transcoding failed. File does not appear to contain audio. "
                "File type is application/octet-stream (data).",
            )
            return
        words = words_over(duration, speakers=bool(state["speaker_labels"]))
        text = " ".join(w["text"] for w in words)
        if state["punctuate"]:
            text += "."
        state.update(
            status="completed",
            text=text,
            words=words,
            language_code=state["language_code"] or "en",
            audio_duration=round(duration),
            confidence=0.9,
            speech_model_used=(state["speech_models"] or ["universal-3-pro"])[0],
        )

    async def _list(self, request: web.Request) -> web.Response:
        refused = await self._record(request)
        if refused is not None:
            return refused
        limit = int(request.query.get("limit", "10"))
        items = [
            {"id": t["id"], "status": t["status"], "audio_url": t["audio_url"]}
            for t in list(self.transcripts.values())[:limit]
        ]
        page = {"limit": limit, "result_count": len(items), "current_url": str(request.url)}
        return web.json_response({"page_details": page, "transcripts": items})

    # --- streaming ----------------------------------------------------------------

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        session = StreamSession(query=dict(request.query), headers=CIMultiDict(request.headers))
        self.sessions.append(session)
        try:
            if self.stream_reject_status is not None:
                headers = {"Retry-After": self.retry_after} if self.retry_after else None
                return web.json_response(
                    {"error": self.error_text}, status=self.stream_reject_status, headers=headers
                )
            if request.headers.get("Authorization") not in self.valid_keys:
                return web.json_response({"error": AUTH_ERROR}, status=401)
            ws = web.WebSocketResponse(autoping=True)
            await ws.prepare(request)
            try:
                await self._serve(ws, session)
            finally:
                if not ws.closed:
                    await ws.close()
            return ws
        finally:
            session.closed_at = time.monotonic()
            session.closed.set()

    async def _send(self, ws: web.WebSocketResponse, session: StreamSession, message: dict[str, Any]) -> None:
        session.sent.append(message)
        await ws.send_json(message)

    async def _serve(self, ws: web.WebSocketResponse, session: StreamSession) -> None:
        query = session.query
        problem = _check_stream_query(query)
        if problem is not None:
            await ws.close(code=3006, message=problem.encode())
            return
        if self.stream_hang:
            async for _ in ws:
                pass
            return
        await self._send(
            ws, session, {"type": "Begin", "id": session.id, "expires_at": int(time.time()) + 600}
        )
        if self.stream_close_code is not None and self.stream_close_after is None:
            await ws.close(code=self.stream_close_code, message=self.stream_close_reason.encode())
            return
        if self.stream_error is not None:
            code, text = self.stream_error
            await self._send(ws, session, {"type": "Error", "error_code": code, "error": text})
            await ws.close(code=1011, message=b"error")
            return
        rate = int(query["sample_rate"])
        width = 1 if query.get("encoding") == "pcm_mulaw" else 2
        format_turns = query.get("format_turns") == "true"
        turn = _Turn(self, format_turns)
        audio_messages = 0
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                data: bytes = msg.data
                millis = len(data) / width / rate * 1000
                session.chunk_ms.append(millis)
                if not 50 <= millis <= 1000:
                    reason = f"Input duration violation: {millis:.0f} ms. Expected between 50 and 1000 ms"
                    await ws.close(code=3007, message=reason.encode())
                    return
                session.audio += data
                audio_messages += 1
                if self.stream_close_after is not None and audio_messages >= self.stream_close_after:
                    code = self.stream_close_code or 3005
                    await ws.close(code=code, message=self.stream_close_reason.encode())
                    return
                heard = min(len(SCRIPT), int(len(session.audio) / width / rate / self.word_seconds))
                for message in turn.hear(heard):
                    await self._send(ws, session, message)
            elif msg.type is WSMsgType.TEXT:
                message = json.loads(msg.data)
                session.client_messages.append(message)
                kind = message.get("type")
                if kind == "Terminate":
                    if self.stream_stall:
                        continue
                    for out in turn.end():
                        await self._send(ws, session, out)
                    seconds = len(session.audio) / width / rate
                    await self._send(
                        ws,
                        session,
                        {
                            "type": "Termination",
                            "audio_duration_seconds": round(seconds),
                            "session_duration_seconds": round(seconds) + 1,
                        },
                    )
                    await ws.close(code=1000)
                    return
                if kind == "ForceEndpoint":
                    for out in turn.end():
                        await self._send(ws, session, out)
                elif kind not in ("KeepAlive", "UpdateConfiguration"):
                    await ws.close(code=3006, message=b"Invalid message type")
                    return


def _check_stream_query(query: dict[str, str]) -> str | None:
    rate = query.get("sample_rate", "")
    if not rate.isdigit() or int(rate) <= 0:
        return "Invalid sample_rate: must be a positive integer"
    if query.get("encoding", "pcm_s16le") not in ("pcm_s16le", "pcm_mulaw"):
        return f"Invalid encoding: {query.get('encoding')}"
    if "speech_model" in query and query["speech_model"] not in STREAM_MODELS:
        return f"Invalid speech_model: {query['speech_model']}"
    for flag in ("format_turns", "speaker_labels"):
        if flag in query and query[flag] not in ("true", "false"):
            return f"Invalid {flag}: {query[flag]}"
    if "min_turn_silence" in query and not query["min_turn_silence"].isdigit():
        return "Invalid min_turn_silence"
    if "keyterms_prompt" in query:
        try:
            terms = json.loads(query["keyterms_prompt"])
        except ValueError:
            return "Invalid keyterms_prompt"
        if not isinstance(terms, list):
            return "Invalid keyterms_prompt"
    return None


class _Turn:
    """The words of the turn being heard, and the Turn messages they make."""

    def __init__(self, fake: FakeAssemblyAI, format_turns: bool) -> None:
        self.fake = fake
        self.format_turns = format_turns
        self.order = 0
        self.words: list[dict[str, Any]] = []
        self.heard = 0

    def _word(self, index: int) -> dict[str, Any]:
        start = round(index * self.fake.word_seconds * 1000)
        end = start + round(self.fake.word_seconds * 800)
        return {"start": start, "end": end, "text": SCRIPT[index], "confidence": 0.88, "word_is_final": False}

    def _message(self, *, end_of_turn: bool, formatted: bool) -> dict[str, Any]:
        words = [
            dict(w, word_is_final=end_of_turn or i < len(self.words) - 1) for i, w in enumerate(self.words)
        ]
        final_words = [w["text"] for w in words if w["word_is_final"]]
        transcript = " ".join(final_words)
        if formatted and transcript:
            transcript = transcript[0].upper() + transcript[1:] + "."
            words = [
                dict(w, text=w["text"].capitalize() if i == 0 else w["text"]) for i, w in enumerate(words)
            ]
        return {
            "type": "Turn",
            "turn_order": self.order,
            "turn_is_formatted": formatted,
            "end_of_turn": end_of_turn,
            "transcript": transcript,
            "end_of_turn_confidence": 0.9 if end_of_turn else 0.1,
            "words": words,
        }

    def hear(self, heard: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while self.heard < heard:
            if not self.words and self.fake.speech_started:
                start = round(self.heard * self.fake.word_seconds * 1000)
                out.append({"type": "SpeechStarted", "timestamp": start})
            self.words.append(self._word(self.heard))
            self.heard += 1
            out.append(self._message(end_of_turn=False, formatted=False))
            if len(self.words) >= self.fake.words_per_turn:
                out.extend(self.end())
        return out

    def end(self) -> list[dict[str, Any]]:
        if not self.words:
            return []
        out = [self._message(end_of_turn=True, formatted=False)]
        if self.format_turns:
            out.append(self._message(end_of_turn=True, formatted=True))
        self.words = []
        self.order += 1
        return out
