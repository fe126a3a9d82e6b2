"""VERIFY for the Gemini API: GET /v1beta/models, authenticated by the key, free of charge."""

from google.genai import types

from callers.gemini.client import connect_with_api_key
from callers.gemini.wire import GoogleModelsVerifier

# The base models the key may use; one page (up to 1000) is enough to count for the detail.
CALLER = GoogleModelsVerifier(connect_with_api_key, "Gemini", types.ListModelsConfig(page_size=1000))
