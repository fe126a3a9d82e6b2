"""Embeddings for openrouter: the shared OpenAI-wire code, parametrised by its row."""

from callers.openai.embed import OpenAIWireEmbedder
from callers.openrouter import WIRE

CALLER = OpenAIWireEmbedder(WIRE)
