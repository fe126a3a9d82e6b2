"""Chat and streaming chat for openrouter: the shared OpenAI-wire code, parametrised by its row."""

from callers.openai.chat import OpenAIWireChat
from callers.openrouter import WIRE

CALLER = OpenAIWireChat(WIRE)
