"""CHAT and STREAM_CHAT for the Gemini API: generateContent / streamGenerateContent?alt=sse."""

from callers.gemini.client import connect_with_api_key
from callers.gemini.wire import GoogleChat

CALLER = GoogleChat(connect_with_api_key, "Gemini")
