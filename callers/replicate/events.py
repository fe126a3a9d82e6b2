"""Server-sent events of a Replicate prediction stream; no network.

Replicate's stream has three event types: `output` (plain text: the next piece of
the answer), `error` (JSON with "detail") and `done` (JSON: {} on success, or
{"reason": "canceled" | "error"}). Data spread over several `data:` lines is joined
with newlines, and one space after the colon is dropped, as the SSE spec says, so a
token's own leading space survives ("data:  world" -> " world").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from callers.base import CallerError, ProviderUnavailable


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    name: str
    data: str


async def server_sent_events(lines: AsyncIterator[bytes]) -> AsyncIterator[ServerSentEvent]:
    name = "message"
    data: list[str] = []
    async for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data or name != "message":
                yield ServerSentEvent(name, "\n".join(data))
            name, data = "message", []
            continue
        if line.startswith(":"):  # a comment (keep-alive)
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        # `id` and `retry` only matter to a reconnecting EventSource; a broken stream
        # is an error here, not something to resume.


def _json_object(data: str) -> dict[str, object]:
    try:
        parsed = orjson.loads(data) if data.strip() else {}
    except orjson.JSONDecodeError:
        return {"detail": data}
    return parsed if isinstance(parsed, dict) else {"detail": data}


def stream_error(data: str) -> CallerError:
    detail = _json_object(data).get("detail") or data or "no detail"
    return ProviderUnavailable(f"the Replicate prediction failed mid-stream: {detail}")


def done_failure(data: str) -> CallerError | None:
    """The error a `done` event reports, or None when the prediction succeeded."""
    reason = _json_object(data).get("reason")
    if not reason:
        return None
    return ProviderUnavailable(f"the Replicate prediction ended early ({reason})")
