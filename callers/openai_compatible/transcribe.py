"""STT on an OpenAI-compatible server (vLLM, LocalAI, Speaches): OpenAI's wire, its base URL."""

from callers.openai.transcribe import OpenAIWireTranscriber
from callers.openai_compatible import WIRE

CALLER = OpenAIWireTranscriber(WIRE)
