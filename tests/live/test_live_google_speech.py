"""Live Google Cloud Speech: skipped unless GOOGLE_SPEECH_SERVICE_ACCOUNT_JSON holds a key file."""

from __future__ import annotations

import os

import pytest

from callers import audio, pools, registry
from callers.base import Capability, Synthesizer, Transcriber
from callers.types import AudioContainer, AudioEncoding, AudioFormat, SynthesizeRequest, TranscribeRequest
from tests.fakes.secret_fields import PlainSecret

KEY_FILE = os.environ.get("GOOGLE_SPEECH_SERVICE_ACCOUNT_JSON", "")
pytestmark = pytest.mark.skipif(not KEY_FILE, reason="GOOGLE_SPEECH_SERVICE_ACCOUNT_JSON is not set")


async def test_live_verify_synthesize_and_transcribe() -> None:
    secret = PlainSecret(service_account_json=KEY_FILE)
    try:
        result = await registry.verify("google_speech", secret, {}, timeout=30)
        assert result.valid, result.reason
        tts = registry.capability("google_speech", Capability.TTS)
        assert isinstance(tts, Synthesizer)
        wav = AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.WAV, 16000)
        spoken = await tts.synthesize(
            secret, {}, SynthesizeRequest("Hello from the hub.", "en-US-Neural2-C", wav), timeout=30
        )
        assert audio.probe(spoken.audio, wav).sample_rate_hz == 16000
        stt = registry.capability("google_speech", Capability.STT)
        assert isinstance(stt, Transcriber)
        heard = await stt.transcribe(
            secret, {}, TranscribeRequest(spoken.audio, wav, language="en-US"), timeout=30
        )
        assert "hello" in heard.transcript.lower()
    finally:
        await pools.close_all()
