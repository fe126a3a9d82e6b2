"""EMBED for the Gemini API: batchEmbedContents, one request per input, in input order."""

from callers.gemini.client import connect_with_api_key
from callers.gemini.wire import GoogleEmbedder

CALLER = GoogleEmbedder(connect_with_api_key, "Gemini")
