"""VOICES: GET {base}/v1/voices through the SDK (`voices.get_all`): every voice of the
account, premade ones included, in one answer.

Languages come from each voice's `verified_languages` (locale "en-US", else language
"en"), else from its `language` label; gender from its `gender` label; models from
the verified languages' model ids and `high_quality_base_model_ids`. A language filter
keeps the voices with a language that the BCP-47 prefix matches ("en" matches
"en-US"); a voice that declares no language at all is left out of a filtered list.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from callers.base import ProviderTimeout, SecretFields
from callers.elevenlabs import client, errors
from callers.types import Voice, VoiceGender

_GENDERS = {
    "female": VoiceGender.FEMALE,
    "male": VoiceGender.MALE,
    "neutral": VoiceGender.NEUTRAL,
    "non-binary": VoiceGender.NEUTRAL,
    "non_binary": VoiceGender.NEUTRAL,
}


def _languages(voice: Any) -> list[str]:
    found: list[str] = []
    for verified in voice.verified_languages or ():
        tag = verified.locale or verified.language
        if tag and tag not in found:
            found.append(str(tag))
    label = (voice.labels or {}).get("language")
    if not found and label:
        found.append(str(label))
    return found


def _models(voice: Any) -> list[str]:
    found: list[str] = []
    for model in (
        *(v.model_id for v in voice.verified_languages or ()),
        *(voice.high_quality_base_model_ids or ()),
    ):
        if model and model not in found:
            found.append(str(model))
    return found


def to_voice(voice: Any) -> Voice:
    gender = (voice.labels or {}).get("gender")
    return Voice(
        id=voice.voice_id,
        name=voice.name or voice.voice_id,
        languages=_languages(voice),
        gender=_GENDERS.get(str(gender).lower()) if gender else None,
        models=_models(voice),
    )


def matches(voice: Voice, language: str | None) -> bool:
    if language is None:
        return True
    prefix = language.lower().replace("_", "-")
    for tag in voice.languages:
        tag = tag.lower().replace("_", "-")
        if tag == prefix or tag.startswith(f"{prefix}-"):
            return True
    return False


async def fetch_voices(secret: SecretFields, options: Mapping[str, str], *, timeout: float) -> list[Voice]:
    where = client.host(options)
    key = client.key(secret)
    sdk = client.sdk(secret, options, timeout=timeout)
    try:
        async with asyncio.timeout(timeout):
            answer = await sdk.voices.get_all(request_options=client.request_options(timeout))
    except TimeoutError:
        raise ProviderTimeout(f"{where} did not answer within {timeout:g} s") from None
    except errors.sdk_errors() as exc:
        raise errors.from_sdk(exc, where, key=key) from None
    return [to_voice(v) for v in answer.voices]


class ElevenLabsVoices:
    async def list_voices(
        self, secret: SecretFields, options: Mapping[str, str], *, language: str | None, timeout: float
    ) -> list[Voice]:
        voices = await fetch_voices(secret, options, timeout=timeout)
        return [v for v in voices if matches(v, language)]


CALLER = ElevenLabsVoices()
