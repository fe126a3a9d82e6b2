"""VERIFY for Vertex AI: list the project's models in the location (GET .../locations/{l}/models).

Chosen over listing Google's publisher models because it proves more at no cost: the
key file yields a token (a revoked key fails there), and the service account may read
Vertex AI in this very project and location (aiplatform.models.list, which the Vertex
AI User role grants), so a wrong project or a missing role shows up now, not on the
first chat. Publisher models are the same for every caller and would prove neither.
"""

from collections.abc import Mapping

from google.genai import types

from callers.gemini.wire import GoogleModelsVerifier
from callers.vertex_ai import SPEC
from callers.vertex_ai.client import connect_with_service_account


def where(options: Mapping[str, str], models: list[types.Model]) -> dict[str, str]:
    """What was proven: access to this project and location (the models found do not matter)."""
    settings = SPEC.with_defaults(options)
    return {"project": settings["project"], "location": settings["location"]}


# query_base=False: the project's own models; one is enough, only access is being tested.
CALLER = GoogleModelsVerifier(
    connect_with_service_account, "Vertex AI", types.ListModelsConfig(query_base=False, page_size=1), where
)
