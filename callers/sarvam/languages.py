"""The languages Sarvam speaks: a fixed set of Indian languages and Indian English.

From the SDK's own enums (sarvamai 0.1.39): SpeechToTextLanguage (saaras:v3/v4, the 22
scheduled Indian languages and en-IN), the older Saarika v2.5 set (10 Indian languages
and en-IN), and TextToSpeechLanguage (Bulbul: the same 11). A request's BCP-47 tag is
matched case-insensitively, a bare primary subtag ("hi") meaning its -IN code, and
ISO 639-1 "or" meaning Sarvam's "od-IN" (Odia). Anything else is refused before any
call, naming the language and the supported list.
"""

from __future__ import annotations

from callers.base import InvalidRequest

# The eleven: Saarika v2.5 speech to text, and every Bulbul model.
ELEVEN: tuple[str, ...] = (
    "hi-IN",
    "bn-IN",
    "kn-IN",
    "ml-IN",
    "mr-IN",
    "od-IN",
    "pa-IN",
    "ta-IN",
    "te-IN",
    "en-IN",
    "gu-IN",
)
# Saaras v3/v4: the eleven and twelve more.
TWENTY_THREE: tuple[str, ...] = (
    *ELEVEN,
    "as-IN",
    "ur-IN",
    "ne-IN",
    "kok-IN",
    "ks-IN",
    "sd-IN",
    "sa-IN",
    "sat-IN",
    "mni-IN",
    "brx-IN",
    "mai-IN",
    "doi-IN",
)
AUTO_DETECT = "unknown"  # speech to text: Sarvam detects the language
_ALIASES = {"or": "od"}


def stt_languages(model: str) -> tuple[str, ...]:
    return ELEVEN if model.startswith("saarika") else TWENTY_THREE


def sarvam_language(language: str, supported: tuple[str, ...], what: str) -> str:
    """Sarvam's code for the BCP-47 tag `language`, or InvalidRequest naming both."""
    parts = language.strip().replace("_", "-").split("-")
    primary = _ALIASES.get(parts[0].lower(), parts[0].lower())
    region = parts[1].upper() if len(parts) > 1 else "IN"
    candidate = f"{primary}-{region}" if len(parts) <= 2 else ""
    if candidate in supported:
        return candidate
    raise InvalidRequest(
        f"language: {language!r} is not a language {what} takes; supported: {', '.join(supported)}"
    )


# Which script a text is written in says its language for all eleven Bulbul languages
# but two: Devanagari is Hindi or Marathi (Hindi is taken), Latin is English.
_SCRIPTS: tuple[tuple[int, int, str], ...] = (
    (0x0900, 0x097F, "hi-IN"),
    (0x0980, 0x09FF, "bn-IN"),
    (0x0A00, 0x0A7F, "pa-IN"),
    (0x0A80, 0x0AFF, "gu-IN"),
    (0x0B00, 0x0B7F, "od-IN"),
    (0x0B80, 0x0BFF, "ta-IN"),
    (0x0C00, 0x0C7F, "te-IN"),
    (0x0C80, 0x0CFF, "kn-IN"),
    (0x0D00, 0x0D7F, "ml-IN"),
)


def language_of_text(text: str) -> str:
    """Bulbul needs a language: when none is asked, the script of the text's first
    Indic letter decides; text without one is Indian English."""
    for char in text:
        point = ord(char)
        if point < 0x0900:
            continue
        for low, high, code in _SCRIPTS:
            if low <= point <= high:
                return code
    return "en-IN"
