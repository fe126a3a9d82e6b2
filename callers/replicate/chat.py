"""Chat through Replicate predictions: sync mode with a polling fallback, and SSE streaming.

Unary: the prediction is created with `Prefer: wait=N` (Replicate holds the request
until the prediction finishes, N <= 60 s) and, if it is still running when that
answer comes, polled with GET /predictions/{id} until it ends.

Streaming: created with "stream": true, then its `urls.stream` is read as server-sent
events; when `done` arrives the prediction is fetched once more for its metrics,
which is where Replicate reports token counts (the stream carries none).

Cancellation and deadline: every prediction is created with `Cancel-After`, so that
Replicate stops it at the call's deadline even if we never learn its id (a sync-mode
request cancelled before its answer). Once the id is known, a call that is cancelled,
times out or fails mid-way also sends POST /predictions/{id}/cancel (best effort, in
the background, bounded by api.CANCEL_TIMEOUT) so that the account stops paying.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Mapping
from typing import Any

from callers.base import CallerError, InvalidRequest, ProviderUnavailable, SecretFields
from callers.replicate.api import ReplicateApi
from callers.replicate.convert import (
    TERMINAL_STATUSES,
    chat_response,
    finish_reason,
    prediction_body,
    prediction_id,
    prediction_target,
    usage,
)
from callers.replicate.events import done_failure, server_sent_events, stream_error
from callers.types import ChatEvent, ChatRequest, ChatResponse, ChatStreamEnd, TextDelta, Usage

logger = logging.getLogger(__name__)

MAX_SYNC_WAIT = 60  # seconds: the longest `Prefer: wait` Replicate honours
FIRST_POLL_INTERVAL = 0.25
MAX_POLL_INTERVAL = 2.0
# Cancel-After below this is not offered (Replicate's deadlines are whole seconds).
MIN_CANCEL_AFTER = 5


def _create_headers(api: ReplicateApi, *, wait: bool) -> dict[str, str]:
    left = api.remaining()
    headers = {"Cancel-After": f"{max(MIN_CANCEL_AFTER, math.ceil(left))}s"}
    if wait:
        headers["Prefer"] = f"wait={max(1, min(MAX_SYNC_WAIT, math.floor(left)))}"
    return headers


async def _create(api: ReplicateApi, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    path = prediction_target(request.model).path
    body = prediction_body(request, stream=stream)
    prediction: dict[str, Any] = await api.request(
        "POST", f"{api.base_url}{path}", body=body, headers=_create_headers(api, wait=not stream)
    )
    return prediction


async def _poll_until_done(api: ReplicateApi, prediction: dict[str, Any]) -> dict[str, Any]:
    identifier = prediction_id(prediction)
    interval = FIRST_POLL_INTERVAL
    while prediction.get("status") not in TERMINAL_STATUSES:
        await asyncio.sleep(min(interval, api.remaining()))
        interval = min(interval * 1.5, MAX_POLL_INTERVAL)
        prediction = await api.request("GET", f"{api.base_url}/predictions/{identifier}")
    return prediction


class ReplicateChat:
    async def chat(
        self, secret: SecretFields, options: Mapping[str, str], request: ChatRequest, *, timeout: float
    ) -> ChatResponse:
        prediction_body(request, stream=False)  # an unsupported request fails before any I/O
        api = ReplicateApi(secret, options, timeout=timeout)
        prediction = await _create(api, request, stream=False)
        identifier = prediction_id(prediction)
        try:
            prediction = await _poll_until_done(api, prediction)
        except (asyncio.CancelledError, CallerError):
            api.cancel_in_background(identifier)
            raise
        return chat_response(request, prediction)

    async def stream_chat(
        self, secret: SecretFields, options: Mapping[str, str], request: ChatRequest, *, timeout: float
    ) -> AsyncIterator[ChatEvent]:
        prediction_body(request, stream=True)
        api = ReplicateApi(secret, options, timeout=timeout)
        prediction = await _create(api, request, stream=True)
        identifier = prediction_id(prediction)
        stream_url = (prediction.get("urls") or {}).get("stream")
        if not isinstance(stream_url, str) or not stream_url:
            api.cancel_in_background(identifier)
            raise InvalidRequest(f"{request.model} does not support streaming on Replicate")
        finished = False
        try:
            async for piece in _stream_text(api, stream_url):
                yield TextDelta(piece)
            finished = True
        finally:
            if not finished:  # cancelled, timed out, failed, or abandoned by the consumer
                api.cancel_in_background(identifier)
        used = await _final_usage(api, identifier)
        yield ChatStreamEnd(finish_reason=finish_reason(request, used), usage=used, request_id=identifier)


async def _stream_text(api: ReplicateApi, stream_url: str) -> AsyncIterator[str]:
    async with api.event_stream(stream_url) as body:
        async for event in server_sent_events(body.__aiter__()):
            if event.name == "output":
                if event.data:
                    yield event.data
            elif event.name == "error":
                raise stream_error(event.data)
            elif event.name == "done":
                failed = done_failure(event.data)
                if failed is not None:
                    raise failed
                return
    # The body ended without `done`: the stream was cut, the answer is incomplete.
    raise ProviderUnavailable(f"the Replicate stream from {api.host} ended before its done event")


async def _final_usage(api: ReplicateApi, identifier: str) -> Usage:
    """Token counts from the finished prediction; zeros (logged) if they cannot be had in time.

    The text has been delivered by then, so failing the call for its accounting would
    make the hub's caller pay twice on retry.
    """
    try:
        prediction = await api.request("GET", f"{api.base_url}/predictions/{identifier}")
        if prediction.get("status") not in TERMINAL_STATUSES:
            prediction = await _poll_until_done(api, prediction)
    except CallerError as exc:
        logger.warning("replicate: no usage for prediction %s (%s)", identifier, exc.message)
        return Usage()
    return usage(prediction)


CALLER = ReplicateChat()
