"""CHAT and STREAM_CHAT for Vertex AI: .../publishers/google/models/{model}:(stream)generateContent."""

from callers.gemini.wire import GoogleChat
from callers.vertex_ai.client import connect_with_service_account

CALLER = GoogleChat(connect_with_service_account, "Vertex AI")
