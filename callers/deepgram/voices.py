"""VOICES: the TTS models of GET {base}/v1/models, each one a voice (its canonical name,
aura-2-<voice>-<lang>, is what SynthesizeRequest.voice takes). Deepgram describes a
voice's character in `metadata.tags`, where "feminine" / "masculine" give its gender."""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import SecretFields
from callers.deepgram import client, errors
from callers.types import Voice, VoiceGender

_GENDERS = {"feminine": VoiceGender.FEMALE, "masculine": VoiceGender.MALE, "neutral": VoiceGender.NEUTRAL}


class DeepgramVoices:
    async def list_voices(
        self, secret: SecretFields, options: Mapping[str, str], *, language: str | None, timeout: float
    ) -> list[Voice]:
        where = client.target(options)
        try:
            answer = await client.sdk(where).manage.v1.models.list(
                request_options=client.request_options(secret, timeout)
            )
        except errors.SDK_ERRORS as exc:
            raise errors.from_sdk(exc, where.host) from None
        voices: list[Voice] = []
        for model in answer.tts or ():
            voice_id = model.canonical_name or model.name
            if not voice_id:
                continue
            languages = list(model.languages or ())
            if language is not None and not any(_matches(have, language) for have in languages):
                continue
            tags = [t.lower() for t in (model.metadata.tags if model.metadata else None) or ()]
            gender = next((_GENDERS[t] for t in tags if t in _GENDERS), None)
            voices.append(
                Voice(
                    id=voice_id,
                    name=(model.name or voice_id).capitalize(),
                    languages=languages,
                    gender=gender,
                    models=[model.architecture] if model.architecture else [],
                )
            )
        return voices


def _matches(have: str, prefix: str) -> bool:
    have, prefix = have.lower(), prefix.lower()
    return have == prefix or have.startswith(prefix + "-")


CALLER = DeepgramVoices()
