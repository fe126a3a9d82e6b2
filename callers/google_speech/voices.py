"""VOICES: Text-to-Speech v1 ListVoices (WaveNet, Neural2, Chirp, Standard, ...)."""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import SecretFields
from callers.google_speech import convert
from callers.google_speech.client import auth_metadata, tts_client, tts_target
from callers.google_speech.errors import call_errors, from_grpc
from callers.types import Voice

SERVICE = "Text-to-Speech"


async def list_google_voices(
    secret: SecretFields, options: Mapping[str, str], language: str | None, timeout: float
) -> list[Voice]:
    metadata = await auth_metadata(secret, timeout=timeout)
    client = tts_client(tts_target(options))
    try:
        # language_code filters server-side; the prefix rule is applied here as well.
        response = await client.list_voices(
            language_code=language or "", retry=None, timeout=timeout, metadata=metadata
        )
    except call_errors() as exc:
        raise from_grpc(exc, SERVICE) from None
    voices = [convert.voice(v) for v in response.voices]
    if language:
        prefix = language.lower()
        voices = [
            v
            for v in voices
            if any(code.lower() == prefix or code.lower().startswith(prefix + "-") for code in v.languages)
        ]
    return voices


class GoogleVoices:
    async def list_voices(
        self, secret: SecretFields, options: Mapping[str, str], *, language: str | None, timeout: float
    ) -> list[Voice]:
        return await list_google_voices(secret, options, language, timeout)


CALLER = GoogleVoices()
