"""VOICES: GET {tts host}/cognitiveservices/voices/list, the region's voices.

Each voice's id is its ShortName (what SSML's <voice name> takes), its languages are
its Locale then its SecondaryLocaleList (multilingual voices), and its model is its
VoiceType (Neural, ...). `language` is a BCP-47 prefix: "en" keeps en-US and en-GB
voices, and a multilingual voice whose secondary locales include English.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callers.azure_speech import wire
from callers.base import ProviderUnavailable, SecretFields
from callers.types import Voice, VoiceGender

_GENDERS = {"female": VoiceGender.FEMALE, "male": VoiceGender.MALE, "neutral": VoiceGender.NEUTRAL}


async def fetch_voices(secret: SecretFields, options: Mapping[str, str], timeout: float) -> list[Voice]:
    url = wire.endpoints(options).voices
    payload, _ = await wire.send("GET", url, wire.key_headers(secret), None, timeout)
    data = wire.parse_json(payload, url)
    if not isinstance(data, list):
        raise ProviderUnavailable(f"unexpected answer from {url.host}: the voices list is not a list")
    return [voice for entry in data if (voice := _voice(entry)) is not None]


def _voice(entry: Any) -> Voice | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("ShortName"), str):
        return None
    languages = [entry["Locale"]] if isinstance(entry.get("Locale"), str) else []
    for extra in entry.get("SecondaryLocaleList") or ():
        if isinstance(extra, str) and extra not in languages:
            languages.append(extra)
    gender = _GENDERS.get(str(entry.get("Gender", "")).lower())
    kind = entry.get("VoiceType")
    return Voice(
        id=entry["ShortName"],
        name=str(entry.get("DisplayName") or entry.get("LocalName") or entry["ShortName"]),
        languages=languages,
        gender=gender,
        models=[kind] if isinstance(kind, str) and kind else [],
    )


def speaks(voice: Voice, prefix: str) -> bool:
    wanted = prefix.lower()
    return any(lang.lower() == wanted or lang.lower().startswith(wanted + "-") for lang in voice.languages)


class AzureVoices:
    async def list_voices(
        self, secret: SecretFields, options: Mapping[str, str], *, language: str | None, timeout: float
    ) -> list[Voice]:
        voices = await fetch_voices(secret, options, timeout)
        if language:
            voices = [v for v in voices if speaks(v, language)]
        return voices


CALLER = AzureVoices()
