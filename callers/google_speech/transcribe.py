"""STT and STREAM_STT: Speech-to-Text v2 Recognize and StreamingRecognize over gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from google.cloud.speech_v2.types import cloud_speech as stt

from callers.base import ProviderTimeout, SecretFields
from callers.google_speech import convert
from callers.google_speech.client import auth_metadata, recognizer, speech_client, speech_target
from callers.google_speech.errors import FirstStatus, call_errors, from_grpc
from callers.google_speech.streams import next_until_quiet, open_stream
from callers.types import (
    StreamTranscribeEnd,
    StreamTranscribeEvent,
    StreamTranscribeRequest,
    TranscribeRequest,
    TranscribeResponse,
)

SERVICE = "Speech-to-Text"


class GoogleTranscriber:
    async def transcribe(
        self, secret: SecretFields, options: Mapping[str, str], request: TranscribeRequest, *, timeout: float
    ) -> TranscribeResponse:
        message = convert.recognize_request(request, recognizer(secret, options))
        metadata = await auth_metadata(secret, timeout=timeout)
        client = speech_client(speech_target(options))
        try:
            response = await client.recognize(request=message, retry=None, timeout=timeout, metadata=metadata)
        except call_errors() as exc:
            raise from_grpc(exc, SERVICE) from None
        return convert.transcribe_response(response)

    async def stream_transcribe(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: StreamTranscribeRequest,
        audio: AsyncIterator[bytes],
        *,
        timeout: float,
    ) -> AsyncIterator[StreamTranscribeEvent]:
        config = convert.recognition_config(
            request.audio_format,
            model=request.model,
            language=request.language,
            punctuate=request.punctuate,
            diarize=request.diarize,
            word_timestamps=request.word_timestamps,
            keywords=request.keywords,
        )
        features = stt.StreamingRecognitionFeatures(
            interim_results=request.interim_results, enable_voice_activity_events=True
        )
        first = stt.StreamingRecognizeRequest(
            recognizer=recognizer(secret, options),
            streaming_config=stt.StreamingRecognitionConfig(config=config, streaming_features=features),
        )
        metadata = await auth_metadata(secret, timeout=timeout)
        client = speech_client(speech_target(options))
        sent = asyncio.Event()  # set when the client's audio has ended (half-close)

        async def requests() -> AsyncIterator[stt.StreamingRecognizeRequest]:
            yield first
            async for chunk in audio:
                for at in range(0, len(chunk), convert.CHUNK_BYTES):
                    yield stt.StreamingRecognizeRequest(audio=chunk[at : at + convert.CHUNK_BYTES])
            sent.set()

        call: Any = None
        first_status = FirstStatus()
        try:
            try:
                call = await asyncio.wait_for(
                    open_stream(client.streaming_recognize, requests(), metadata), timeout=timeout
                )
                call.add_done_callback(first_status)
                responses = call.__aiter__()
                last_end = 0.0
                while True:
                    try:
                        if sent.is_set():
                            response = await asyncio.wait_for(responses.__anext__(), timeout=timeout)
                        else:
                            response = await next_until_quiet(responses, sent, timeout)
                    except StopAsyncIteration:
                        break
                    for event in convert.stream_events(response, last_end):
                        end = getattr(event, "end", None)
                        if getattr(event, "is_final", False) and end is not None:
                            last_end = end
                        yield event
            except TimeoutError:
                raise ProviderTimeout(f"{SERVICE} sent nothing within {timeout:g} s") from None
            except call_errors() as exc:
                raise from_grpc(first_status.real_error(exc), SERVICE) from None
            yield StreamTranscribeEnd(duration=last_end or None)
        finally:
            if call is not None:
                call.cancel()


CALLER = GoogleTranscriber()
