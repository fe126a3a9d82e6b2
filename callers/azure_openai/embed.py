"""Embeddings for Azure OpenAI: the shared OpenAI-wire code, Azure's row."""

from callers.azure_openai import WIRE
from callers.openai.embed import OpenAIWireEmbedder

CALLER = OpenAIWireEmbedder(WIRE)
