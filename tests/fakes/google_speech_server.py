"""A loopback fake of Google Cloud Speech-to-Text v2 and Text-to-Speech v1, over real gRPC.

- a grpc.aio server on 127.0.0.1 serving google.cloud.speech.v2.Speech (Recognize,
  StreamingRecognize) and google.cloud.texttospeech.v1.TextToSpeech (SynthesizeSpeech,
  ListVoices), with generic handlers built from the SDK's own message types;
- an aiohttp OAuth token endpoint (POST /token) for the service-account JWT bearer
  grant, verifying the assertion's RS256 signature with the account's public key.

Every RPC checks the `authorization: Bearer <token>` metadata against the tokens it
issued (UNAUTHENTICATED otherwise) and the recognizer's project (PERMISSION_DENIED).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import grpc
import numpy as np
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from google.auth import jwt
from google.cloud.speech_v2.types import cloud_speech as stt
from google.cloud.texttospeech_v1.types import cloud_tts as tts
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from callers import audio
from callers.types import AudioContainer, AudioEncoding, AudioFormat

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SECONDS_PER_CHAR = 0.06  # synthesized audio length per character of text
VOICES = (
    ("en-US-Neural2-C", ("en-US",), tts.SsmlVoiceGender.FEMALE),
    ("en-US-Wavenet-D", ("en-US",), tts.SsmlVoiceGender.MALE),
    ("en-GB-Chirp3-HD-Aoede", ("en-GB",), tts.SsmlVoiceGender.FEMALE),
    ("de-DE-Standard-A", ("de-DE",), tts.SsmlVoiceGender.FEMALE),
)


def _duration(value: float) -> duration_pb2.Duration:
    whole = int(value)
    return duration_pb2.Duration(seconds=whole, nanos=round((value - whole) * 1e9))


@dataclass
class FakeGoogleSpeech:
    service_accounts: Mapping[str, RSAPublicKey] = field(default_factory=dict)  # client_email -> key
    project: str = "fake-project"
    transcript: str = "hello from the hub"
    force: tuple[grpc.StatusCode, str] | None = None  # every RPC fails with this
    retry_delay: float | None = None  # google.rpc.RetryInfo sent with a forced status
    delay: float = 0.0  # seconds before a unary RPC answers
    stream_hang: bool = False  # StreamingRecognize reads audio and never answers
    interim_every: int = 32000  # bytes of audio between interim results
    keep_audio: bool = True  # False: stream_requests keeps the config only (hour-long streams)
    stream_audio_bytes: int = 0  # audio received by StreamingRecognize, all streams
    recognize_requests: list[stt.RecognizeRequest] = field(default_factory=list)
    stream_requests: list[stt.StreamingRecognizeRequest] = field(default_factory=list)
    synthesize_requests: list[tts.SynthesizeSpeechRequest] = field(default_factory=list)
    list_voices_requests: list[tts.ListVoicesRequest] = field(default_factory=list)
    streaming_synthesize_requests: list[tts.StreamingSynthesizeRequest] = field(default_factory=list)
    synthesis_chunk_delay: float = 0.0  # pause between the audio chunks of a streamed synthesis
    metadata: list[dict[str, str]] = field(default_factory=list)  # per RPC
    assertions: list[dict[str, Any]] = field(default_factory=list)
    cancelled_at: list[float] = field(default_factory=list)  # monotonic times a stream was cancelled
    _tokens: set[str] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: grpc.aio.Server | None = None
    _runner: web.AppRunner | None = None
    _grpc_port: int = 0
    _http_port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._grpc_port}"

    @property
    def token_uri(self) -> str:
        return f"http://127.0.0.1:{self._http_port}/token"

    async def __aenter__(self) -> FakeGoogleSpeech:
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((self._speech_handlers(), self._tts_handlers()))
        self._grpc_port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        app = web.Application()
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._http_port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
        if self._runner is not None:
            await self._runner.cleanup()

    # --- OAuth ---------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode()).items()}
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        assertion = form.get("assertion", "")
        claims = None
        try:
            unverified = jwt.decode(assertion, verify=False)  # type: ignore[no-untyped-call]
            key = self.service_accounts.get(str(unverified.get("iss")))
            if key is not None:
                pem = key.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                claims = jwt.decode(assertion, certs=pem.decode(), audience=self.token_uri)  # type: ignore[no-untyped-call]
        except ValueError:
            claims = None
        if claims is None:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, status=400
            )
        self.assertions.append(claims)
        token = f"ya29.fake-{next(self._ids)}"
        self._tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    # --- plumbing --------------------------------------------------------------------

    async def _admit(self, context: grpc.aio.ServicerContext[Any, Any], resource: str | None) -> None:
        headers = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        self.metadata.append(headers)
        if self.force is not None:
            code, message = self.force
            trailers: tuple[tuple[str, bytes], ...] = ()
            if self.retry_delay is not None:
                info = error_details_pb2.RetryInfo(retry_delay=_duration(self.retry_delay))
                status = status_pb2.Status(code=code.value[0], message=message)
                status.details.add().Pack(info)
                trailers = (("grpc-status-details-bin", status.SerializeToString()),)
            await context.abort(code, message, trailing_metadata=trailers)
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self._tokens:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            )
        if resource is not None and not resource.startswith(f"projects/{self.project}/"):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission 'speech.recognizers.recognize' denied on resource '{resource}'.",
            )

    def _speech_handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "google.cloud.speech.v2.Speech",
            {
                "Recognize": grpc.unary_unary_rpc_method_handler(
                    self._recognize,
                    request_deserializer=stt.RecognizeRequest.deserialize,
                    response_serializer=stt.RecognizeResponse.serialize,
                ),
                "StreamingRecognize": grpc.stream_stream_rpc_method_handler(
                    self._streaming_recognize,
                    request_deserializer=stt.StreamingRecognizeRequest.deserialize,
                    response_serializer=stt.StreamingRecognizeResponse.serialize,
                ),
            },
        )

    def _tts_handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "google.cloud.texttospeech.v1.TextToSpeech",
            {
                "SynthesizeSpeech": grpc.unary_unary_rpc_method_handler(
                    self._synthesize,
                    request_deserializer=tts.SynthesizeSpeechRequest.deserialize,
                    response_serializer=tts.SynthesizeSpeechResponse.serialize,
                ),
                "StreamingSynthesize": grpc.stream_stream_rpc_method_handler(
                    self._streaming_synthesize,
                    request_deserializer=tts.StreamingSynthesizeRequest.deserialize,
                    response_serializer=tts.StreamingSynthesizeResponse.serialize,
                ),
                "ListVoices": grpc.unary_unary_rpc_method_handler(
                    self._list_voices,
                    request_deserializer=tts.ListVoicesRequest.deserialize,
                    response_serializer=tts.ListVoicesResponse.serialize,
                ),
            },
        )

    # --- Speech-to-Text --------------------------------------------------------------

    def _words(self, start: float, end: float, with_words: bool) -> list[stt.WordInfo]:
        if not with_words:
            return []
        words = self.transcript.split()
        step = (end - start) / max(1, len(words))
        return [
            stt.WordInfo(
                word=w,
                start_offset=_duration(start + i * step),
                end_offset=_duration(start + (i + 1) * step),
                confidence=0.9,
            )
            for i, w in enumerate(words)
        ]

    async def _recognize(
        self, request: stt.RecognizeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> stt.RecognizeResponse:
        await self._admit(context, request.recognizer)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.recognize_requests.append(request)
        config = request.config
        if not config.language_codes:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "language_codes is required")
        if request.uri:
            seconds = 2.0
        elif "explicit_decoding_config" in config:
            explicit = config.explicit_decoding_config
            width = 2 if explicit.encoding == explicit.AudioEncoding.LINEAR16 else 1
            seconds = len(request.content) / (
                width * explicit.sample_rate_hertz * explicit.audio_channel_count
            )
        else:
            try:
                seconds = audio.probe(request.content, AudioContainer.WAV).duration
            except Exception:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "audio could not be decoded")
        alternative = stt.SpeechRecognitionAlternative(
            transcript=self.transcript,
            confidence=0.93,
            words=self._words(0.1, seconds, config.features.enable_word_time_offsets),
        )
        result = stt.SpeechRecognitionResult(
            alternatives=[alternative],
            result_end_offset=_duration(seconds),
            language_code=config.language_codes[0].lower(),
        )
        metadata = stt.RecognitionResponseMetadata(
            request_id="req-fake-1", total_billed_duration=_duration(math.ceil(seconds))
        )
        return stt.RecognizeResponse(results=[result], metadata=metadata)

    async def _streaming_recognize(
        self,
        requests: AsyncIterator[stt.StreamingRecognizeRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[stt.StreamingRecognizeResponse]:
        kind = stt.StreamingRecognizeResponse.SpeechEventType

        def done(call: Any) -> None:
            if context.cancelled():
                self.cancelled_at.append(time.monotonic())

        context.add_done_callback(done)
        try:
            iterator = requests.__aiter__()
            first = await iterator.__anext__()
            await self._admit(context, first.recognizer)
            self.stream_requests.append(first)
            config = first.streaming_config.config
            explicit = config.explicit_decoding_config
            narrow = {explicit.AudioEncoding.MULAW, explicit.AudioEncoding.ALAW}
            width = 1 if explicit.encoding in narrow else 2  # G.711: a byte a sample
            rate, channels = explicit.sample_rate_hertz or 16000, explicit.audio_channel_count or 1
            bytes_per_second = width * rate * channels
            received, pending, began = 0, 0, False
            words_on = config.features.enable_word_time_offsets
            interim = first.streaming_config.streaming_features.interim_results
            async for message in iterator:
                if self.keep_audio:
                    self.stream_requests.append(message)
                self.stream_audio_bytes += len(message.audio)
                if "streaming_config" in message:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, "streaming_config only in the first"
                    )
                received += len(message.audio)
                pending += len(message.audio)
                if self.stream_hang:
                    continue
                if not began:
                    began = True
                    yield stt.StreamingRecognizeResponse(
                        speech_event_type=kind.SPEECH_ACTIVITY_BEGIN, speech_event_offset=_duration(0.1)
                    )
                if interim and pending >= self.interim_every:
                    pending = 0
                    at = received / bytes_per_second
                    part = " ".join(self.transcript.split()[:2])
                    result = stt.StreamingRecognitionResult(
                        alternatives=[stt.SpeechRecognitionAlternative(transcript=part)],
                        is_final=False,
                        stability=0.5,
                        result_end_offset=_duration(at),
                    )
                    yield stt.StreamingRecognizeResponse(results=[result])
            if self.stream_hang:
                await asyncio.sleep(60)
            # half-closed: the final result, then the end of speech
            end = received / bytes_per_second
            final = stt.StreamingRecognitionResult(
                alternatives=[
                    stt.SpeechRecognitionAlternative(
                        transcript=self.transcript, confidence=0.91, words=self._words(0.1, end, words_on)
                    )
                ],
                is_final=True,
                result_end_offset=_duration(end),
                language_code=config.language_codes[0].lower() if config.language_codes else "",
            )
            yield stt.StreamingRecognizeResponse(results=[final])
            yield stt.StreamingRecognizeResponse(
                speech_event_type=kind.SPEECH_ACTIVITY_END, speech_event_offset=_duration(end)
            )
        except asyncio.CancelledError:
            if not self.cancelled_at:
                self.cancelled_at.append(time.monotonic())
            raise

    # --- Text-to-Speech --------------------------------------------------------------

    async def _synthesize(
        self, request: tts.SynthesizeSpeechRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tts.SynthesizeSpeechResponse:
        await self._admit(context, None)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.synthesize_requests.append(request)
        if request.voice.name not in {v[0] for v in VOICES}:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"Voice '{request.voice.name}' does not exist."
            )
        config = request.audio_config
        rate = config.sample_rate_hertz or 24000
        text = request.input.text or request.input.ssml
        seconds = max(0.2, len(text) * SECONDS_PER_CHAR / (config.speaking_rate or 1.0))
        t = np.arange(int(rate * seconds)) / rate
        samples = (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2")
        pcm = audio.Pcm(samples.tobytes(), rate)
        enc = tts.AudioEncoding
        target = {
            enc.LINEAR16: AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.WAV, rate),
            enc.MP3: AudioFormat(AudioEncoding.MP3, AudioContainer.MP3, rate),
            enc.OGG_OPUS: AudioFormat(AudioEncoding.OPUS, AudioContainer.OGG, rate),
            enc.MULAW: AudioFormat(AudioEncoding.MULAW, AudioContainer.WAV, rate),
            enc.ALAW: AudioFormat(AudioEncoding.ALAW, AudioContainer.WAV, rate),
        }.get(config.audio_encoding)
        if target is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Unsupported audio_encoding.")
            raise AssertionError("abort raises")
        return tts.SynthesizeSpeechResponse(audio_content=audio.encode(pcm, target))

    async def _streaming_synthesize(
        self,
        requests: AsyncIterator[tts.StreamingSynthesizeRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[tts.StreamingSynthesizeResponse]:
        """As Google's: a config first, then text inputs, each synthesized as it comes
        (Chirp 3: HD voices only; PCM, MULAW, ALAW or OGG_OPUS), in 100 ms pieces."""

        def done(call: Any) -> None:
            if context.cancelled():
                self.cancelled_at.append(time.monotonic())

        context.add_done_callback(done)
        iterator = requests.__aiter__()
        first = await iterator.__anext__()
        await self._admit(context, None)
        self.streaming_synthesize_requests.append(first)
        if "streaming_config" not in first:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "The first request must hold streaming_config."
            )
        voice = first.streaming_config.voice.name
        if "Chirp3-HD" not in voice or voice not in {v[0] for v in VOICES}:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"Voice '{voice}' does not support streaming synthesis."
            )
        config = first.streaming_config.streaming_audio_config
        rate = config.sample_rate_hertz or 24000
        enc = tts.AudioEncoding
        target = {
            enc.PCM: AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.RAW, rate),
            enc.MULAW: AudioFormat(AudioEncoding.MULAW, AudioContainer.RAW, rate),
            enc.ALAW: AudioFormat(AudioEncoding.ALAW, AudioContainer.RAW, rate),
            enc.OGG_OPUS: AudioFormat(AudioEncoding.OPUS, AudioContainer.OGG, rate),
        }.get(config.audio_encoding)
        if target is None:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "Streaming supports PCM, ALAW, MULAW and OGG_OPUS."
            )
            raise AssertionError("abort raises")
        try:
            async for message in iterator:
                self.streaming_synthesize_requests.append(message)
                if "streaming_config" in message:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, "streaming_config only in the first request."
                    )
                seconds = max(0.2, len(message.input.text) * SECONDS_PER_CHAR / (config.speaking_rate or 1.0))
                t = np.arange(int(rate * seconds)) / rate
                encoded = audio.encode(
                    audio.Pcm((np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes(), rate), target
                )
                piece = max(1, len(encoded) * 100 // max(1, int(seconds * 1000)))  # about 100 ms of audio
                for at in range(0, len(encoded), piece):
                    yield tts.StreamingSynthesizeResponse(audio_content=encoded[at : at + piece])
                    if self.synthesis_chunk_delay:
                        await asyncio.sleep(self.synthesis_chunk_delay)
        except asyncio.CancelledError:
            if not self.cancelled_at:
                self.cancelled_at.append(time.monotonic())
            raise

    async def _list_voices(
        self, request: tts.ListVoicesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tts.ListVoicesResponse:
        await self._admit(context, None)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.list_voices_requests.append(request)
        voices = [
            tts.Voice(
                name=name, language_codes=list(codes), ssml_gender=gender, natural_sample_rate_hertz=24000
            )
            for name, codes, gender in VOICES
            if not request.language_code or any(c.startswith(request.language_code) for c in codes)
        ]
        return tts.ListVoicesResponse(voices=voices)
