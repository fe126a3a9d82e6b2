"""STT and STREAM_STT for AssemblyAI: the v2 REST transcript API (callers.assemblyai.prerecorded)
and Universal Streaming v3 over a websocket (callers.assemblyai.streaming)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from callers.assemblyai import prerecorded, streaming
from callers.base import SecretFields
from callers.types import (
    StreamTranscribeEvent,
    StreamTranscribeRequest,
    TranscribeRequest,
    TranscribeResponse,
)


class AssemblyAITranscriber:
    async def transcribe(
        self, secret: SecretFields, options: Mapping[str, str], request: TranscribeRequest, *, timeout: float
    ) -> TranscribeResponse:
        return await prerecorded.transcribe(secret, options, request, timeout)

    def stream_transcribe(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: StreamTranscribeRequest,
        audio: AsyncIterator[bytes],
        *,
        timeout: float,
    ) -> AsyncIterator[StreamTranscribeEvent]:
        return streaming.stream_transcribe(secret, options, request, audio, timeout)


CALLER = AssemblyAITranscriber()
