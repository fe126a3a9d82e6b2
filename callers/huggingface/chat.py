"""Chat and streaming chat for Hugging Face: OpenAI's wire at the router, an endpoint or TGI."""

from callers.huggingface import WIRE
from callers.openai.chat import OpenAIWireChat

CALLER = OpenAIWireChat(WIRE)
