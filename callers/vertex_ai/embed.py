"""EMBED for Vertex AI: :predict for text-embedding-* models, :batchEmbedContents for gemini-embedding-*."""

from callers.gemini.wire import GoogleEmbedder
from callers.vertex_ai.client import connect_with_service_account

CALLER = GoogleEmbedder(connect_with_service_account, "Vertex AI")
