"""TTS on an OpenAI-compatible server (Kokoro-FastAPI, LocalAI, Speaches): OpenAI's wire."""

from callers.openai.synthesize import OpenAIWireSynthesizer
from callers.openai_compatible import WIRE

CALLER = OpenAIWireSynthesizer(WIRE)
