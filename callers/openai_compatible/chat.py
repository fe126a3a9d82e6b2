"""Chat and streaming chat for openai_compatible: the shared OpenAI-wire code, parametrised by its row."""

from callers.openai.chat import OpenAIWireChat
from callers.openai_compatible import WIRE

CALLER = OpenAIWireChat(WIRE)
