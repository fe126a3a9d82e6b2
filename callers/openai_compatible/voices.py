"""An OpenAI-compatible server's voices: OpenAI's names, which these servers accept as
aliases (their own voice ids work in SynthesizeRequest.voice too)."""

from callers.openai.voices import CALLER

__all__ = ["CALLER"]
