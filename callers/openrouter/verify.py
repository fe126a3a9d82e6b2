"""Verify an OpenRouter key with the shared OpenAI-wire verifier."""

from callers.openai.verify import OpenAIWireVerifier
from callers.openrouter import WIRE

CALLER = OpenAIWireVerifier(WIRE)
