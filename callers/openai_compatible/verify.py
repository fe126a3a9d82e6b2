"""Verify an OpenAI-compatible server (and its key, if it has one) by listing models."""

from callers.openai.verify import OpenAIWireVerifier
from callers.openai_compatible import WIRE

CALLER = OpenAIWireVerifier(WIRE)
