"""Voices: GET {base_url}/voices, following Cartesia's cursor pages.

A page is {"data": [...], "has_more": bool, "next_page": id}; the next page is asked
with starting_after=<next_page, else the last voice's id> (what the SDK's cursor page
does), while has_more says so, or, where an API version leaves has_more out, while
pages come back full. A voice has id, name, language (ISO 639-1), and in newer API
versions locales [{locale: BCP-47}], and gender (masculine / feminine / gender_neutral).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from callers.base import ProviderUnavailable, SecretFields
from callers.cartesia import client
from callers.types import Voice, VoiceGender

_PAGE = 100
_MAX_PAGES = 50
_GENDERS = {
    "female": VoiceGender.FEMALE,
    "feminine": VoiceGender.FEMALE,
    "male": VoiceGender.MALE,
    "masculine": VoiceGender.MALE,
    "neutral": VoiceGender.NEUTRAL,
    "gender_neutral": VoiceGender.NEUTRAL,
}


def _languages(item: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    locales = item.get("locales")
    if isinstance(locales, list):
        for entry in locales:
            locale = entry.get("locale") if isinstance(entry, dict) else None
            if isinstance(locale, str) and locale and locale not in found:
                found.append(locale)
    language = item.get("language")
    if isinstance(language, str) and language and not any(f.split("-")[0] == language for f in found):
        found.insert(0, language)
    return found


def to_voice(item: Mapping[str, Any]) -> Voice:
    gender = item.get("gender")
    return Voice(
        id=str(item["id"]),
        name=str(item.get("name") or item["id"]),
        languages=_languages(item),
        gender=_GENDERS.get(gender.lower()) if isinstance(gender, str) else None,
    )


class CartesiaVoices:
    async def list_voices(
        self, secret: SecretFields, options: Mapping[str, str], *, language: str | None, timeout: float
    ) -> list[Voice]:
        voices: list[Voice] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            query = {"limit": str(_PAGE)}
            if cursor:
                query["starting_after"] = cursor
            target = client.url(options, "voices", query)
            body, _ = await client.request("GET", target, secret, options, timeout=timeout)
            try:
                page = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise ProviderUnavailable("Cartesia answered a voice list that is not JSON") from None
            items = page.get("data") if isinstance(page, dict) else page
            if not isinstance(items, list):
                raise ProviderUnavailable("Cartesia answered a voice list without data")
            listed = [item for item in items if isinstance(item, dict) and item.get("id")]
            voices.extend(to_voice(item) for item in listed)
            if not isinstance(page, dict) or not listed:
                break
            more = page.get("has_more")
            if more is False or (more is None and len(items) < _PAGE):
                break
            next_page = page.get("next_page")
            cursor = next_page if isinstance(next_page, str) and next_page else str(listed[-1]["id"])
        if language:
            prefix = language.split("-")[0].lower()
            voices = [v for v in voices if any(lang.lower().split("-")[0] == prefix for lang in v.languages)]
        return voices


CALLER = CartesiaVoices()
