"""Chat and streaming chat for Azure OpenAI: the shared OpenAI-wire code, Azure's row."""

from callers.azure_openai import WIRE
from callers.openai.chat import OpenAIWireChat

CALLER = OpenAIWireChat(WIRE)
