"""STT over OpenAI's wire: POST {base_url}/audio/transcriptions (whisper-1,
gpt-4o-transcribe, gpt-4o-mini-transcribe). No live transcription here: OpenAI's
real-time transcription is its Realtime API, a different protocol (not yet served)."""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import SecretFields
from callers.openai import WIRE
from callers.openai.speech_wire import SpeechEndpoints, parse_transcription, post_form, transcription_form
from callers.openai.vendor import OpenAIWireVendor
from callers.types import TranscribeRequest, TranscribeResponse


class OpenAIWireTranscriber:
    __slots__ = ("endpoints",)

    def __init__(self, vendor: OpenAIWireVendor) -> None:
        self.endpoints = SpeechEndpoints(vendor)

    async def transcribe(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        request: TranscribeRequest,
        *,
        timeout: float,
    ) -> TranscribeResponse:
        form = transcription_form(request)  # bad input is refused before the key is read
        target = self.endpoints.endpoint(options, "audio/transcriptions", json=False)
        data, request_id = await post_form(target, self.endpoints.headers(target, secret), form, timeout)
        return parse_transcription(data, request_id)


CALLER = OpenAIWireTranscriber(WIRE)
