"""OpenAI's TTS voices. OpenAI has no endpoint listing them: this is its documented
list (platform.openai.com/docs/guides/text-to-speech), each speaking every language the
models speak, so a language filter keeps them all. Not every voice works with every
model (tts-1 and tts-1-hd: the first nine), as the `models` field says."""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import SecretFields
from callers.types import Voice

_ALL_MODELS = ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"]
_NEW_MODELS = ["gpt-4o-mini-tts"]
VOICES: tuple[tuple[str, list[str]], ...] = (
    ("alloy", _ALL_MODELS),
    ("ash", _ALL_MODELS),
    ("coral", _ALL_MODELS),
    ("echo", _ALL_MODELS),
    ("fable", _ALL_MODELS),
    ("nova", _ALL_MODELS),
    ("onyx", _ALL_MODELS),
    ("sage", _ALL_MODELS),
    ("shimmer", _ALL_MODELS),
    ("ballad", _NEW_MODELS),
    ("verse", _NEW_MODELS),
)


class OpenAIVoices:
    async def list_voices(
        self, secret: SecretFields, options: Mapping[str, str], *, language: str | None, timeout: float
    ) -> list[Voice]:
        return [Voice(id=name, name=name.capitalize(), models=list(models)) for name, models in VOICES]


CALLER = OpenAIVoices()
