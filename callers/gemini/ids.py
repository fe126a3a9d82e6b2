"""Tool-call ids for Gemini, which mostly gives its function calls none.

Both directions live here: ids made from a response (parse.py) and ids read back from a
conversation's history (convert.py), so the two cannot drift apart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from google.genai import types

from callers.base import InvalidRequest

# Gemini usually gives function calls no id. Such calls get a synthetic one, made from
# the call's position and content, so the same answer yields the same ids whether it was
# streamed or not; synthetic ids are not sent back (Gemini pairs calls and responses by
# name and order), while an id Gemini did give is.
SYNTHETIC_ID_PREFIX = "gcall_"
# Gemini 3 models sign their function calls and reject a history whose calls lost the
# signature. The neutral ToolCall has no room for it, so it rides in the id, after this
# marker (not a base64url character): callers keep tool-call ids verbatim.
SIGNATURE_MARKER = "~sig~"


def tool_call_id(position: int, call: types.FunctionCall, signature: bytes | None) -> str:
    if call.id:
        base = call.id
    else:
        content = json.dumps([call.name, call.args or {}], sort_keys=True).encode()
        base = f"{SYNTHETIC_ID_PREFIX}{position}_{hashlib.sha256(content).hexdigest()[:12]}"
    if signature:
        return f"{base}{SIGNATURE_MARKER}{base64.urlsafe_b64encode(signature).decode('ascii')}"
    return base


def split_tool_call_id(call_id: str) -> tuple[str | None, bytes | None]:
    """(the id to send back to Gemini, or None if synthetic; the thought signature, if any)."""
    base, _, encoded = call_id.partition(SIGNATURE_MARKER)
    signature = None
    if encoded:
        try:
            signature = base64.urlsafe_b64decode(encoded)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"tool call id {base!r} carries a damaged signature") from None
    return (None if base.startswith(SYNTHETIC_ID_PREFIX) else base), signature
