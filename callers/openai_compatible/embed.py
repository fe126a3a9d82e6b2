"""Embeddings for openai_compatible: the shared OpenAI-wire code, parametrised by its row."""

from callers.openai.embed import OpenAIWireEmbedder
from callers.openai_compatible import WIRE

CALLER = OpenAIWireEmbedder(WIRE)
