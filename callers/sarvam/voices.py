"""VOICES: Bulbul's speakers. STATIC: Sarvam has no endpoint listing its stock speakers.

The lists are the SDK's documentation of ``speaker`` (sarvamai 0.1.39,
TextToSpeechSpeaker / text_to_speech.convert): bulbul:v2 with its documented genders,
bulbul:v3 by name (Sarvam documents no gender for them, so none is claimed). Every
Bulbul speaker speaks all eleven Bulbul languages. bulbul:v4-flash's 200+ persona
voices (``<name>_<language>_<style>``) are not listed here; they are passed through
as they are when asked for.
"""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import SecretFields
from callers.sarvam.languages import ELEVEN
from callers.types import Voice, VoiceGender

F, M = VoiceGender.FEMALE, VoiceGender.MALE

BULBUL_V2: tuple[tuple[str, VoiceGender], ...] = (
    ("anushka", F),
    ("manisha", F),
    ("vidya", F),
    ("arya", F),
    ("abhilash", M),
    ("karun", M),
    ("hitesh", M),
)
BULBUL_V3: tuple[str, ...] = (
    "shubh",
    "aditya",
    "ritu",
    "priya",
    "neha",
    "rahul",
    "pooja",
    "rohan",
    "simran",
    "kavya",
    "amit",
    "dev",
    "ishita",
    "shreya",
    "ratan",
    "varun",
    "manan",
    "sumit",
    "roopa",
    "kabir",
    "aayan",
    "ashutosh",
    "advait",
    "anand",
    "tanya",
    "tarun",
    "sunny",
    "mani",
    "gokul",
    "vijay",
    "shruti",
    "suhani",
    "mohit",
    "kavitha",
    "rehan",
    "soham",
    "rupali",
)
_BY_MODEL: dict[str, tuple[str, ...]] = {
    "bulbul:v2": tuple(name for name, _ in BULBUL_V2),
    "bulbul:v3": BULBUL_V3,
}


def speakers_of(model: str) -> tuple[str, ...]:
    """The known speakers of `model`; empty for a model not listed here (not checked)."""
    return _BY_MODEL.get(model, ())


def all_voices() -> list[Voice]:
    voices = [
        Voice(id=name, name=name.capitalize(), languages=list(ELEVEN), gender=gender, models=["bulbul:v2"])
        for name, gender in BULBUL_V2
    ]
    voices += [
        Voice(id=name, name=name.capitalize(), languages=list(ELEVEN), models=["bulbul:v3"])
        for name in BULBUL_V3
    ]
    return voices


def _matches(voice: Voice, language: str) -> bool:
    prefix = language.lower()
    return any(code.lower() == prefix or code.lower().startswith(prefix + "-") for code in voice.languages)


class SarvamVoices:
    async def list_voices(
        self, secret: SecretFields, options: Mapping[str, str], *, language: str | None, timeout: float
    ) -> list[Voice]:
        voices = all_voices()
        if language:
            voices = [v for v in voices if _matches(v, language)]
        return voices


CALLER = SarvamVoices()
