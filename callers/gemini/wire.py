"""The Google callers, shared by gemini (API key) and vertex_ai (service account).

Parametrised by a Connector that builds the per-call genai.Client; everything else
(conversions, error classes, timeouts, cancellation) is the same for both backends,
since Vertex AI serves the same generateContent / streamGenerateContent wire format.

`timeout` bounds the whole call: the SDK applies it per request, and an absolute
deadline covers the rest (connecting plus a stream's every chunk, whatever the
consumer's pace). However a call ends (done, failed, timed out, cancelled, or a stream
closed early by its consumer), its HTTP responses are closed on the way out, and an
unfinished one takes its connection with it (client.GoogleConnection.release).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TypeVar

from google import genai
from google.genai import types

from callers.base import (
    AuthenticationFailed,
    InvalidRequest,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    SecretFields,
    VerifyResult,
)
from callers.gemini.client import Connector
from callers.gemini.convert import generate_call
from callers.gemini.errors import PROVIDER_ERRORS, caller_error
from callers.gemini.parse import StreamState, chat_response
from callers.types import (
    ChatEvent,
    ChatRequest,
    ChatResponse,
    EmbedInputType,
    EmbedRequest,
    EmbedResponse,
    Usage,
)

T = TypeVar("T")

_TASK_TYPES = {EmbedInputType.QUERY: "RETRIEVAL_QUERY", EmbedInputType.DOCUMENT: "RETRIEVAL_DOCUMENT"}
# EmbedContentConfig fields a request may set through provider_options (e.g. a task type
# the neutral input_type has no name for, such as SEMANTIC_SIMILARITY).
_EMBED_OPTIONS = frozenset({"task_type", "title", "auto_truncate"})


async def _bounded(awaitable: Awaitable[T], deadline: float, what: str) -> T:
    """Await with the call's deadline; every provider failure as a caller error."""
    try:
        async with asyncio.timeout_at(deadline):
            return await awaitable
    except TimeoutError:
        raise ProviderTimeout(f"{what} did not finish within the timeout") from None
    except PROVIDER_ERRORS as exc:
        raise caller_error(exc) from None


def _deadline(timeout: float) -> float:
    return asyncio.get_running_loop().time() + timeout


@asynccontextmanager
async def _connected(
    connect: Connector,
    secret: SecretFields,
    options: Mapping[str, str],
    timeout: float,
    deadline: float,
    what: str,
) -> AsyncIterator[genai.Client]:
    """The call's client; on the way out, however it is taken, the call's responses are closed."""
    connection = await _bounded(connect(secret, options, timeout), deadline, what)
    try:
        yield connection.client
    finally:
        await connection.release()


class GoogleChat:
    def __init__(self, connect: Connector, provider: str) -> None:
        self._connect = connect
        self._provider = provider

    async def chat(
        self, secret: SecretFields, options: Mapping[str, str], request: ChatRequest, *, timeout: float
    ) -> ChatResponse:
        deadline = _deadline(timeout)
        call = generate_call(request)
        async with _connected(self._connect, secret, options, timeout, deadline, self._provider) as client:
            generating = client.aio.models.generate_content(
                model=request.model, contents=call.contents, config=call.config
            )
            response = await _bounded(generating, deadline, self._provider)
        return chat_response(response, model=request.model)

    async def stream_chat(
        self, secret: SecretFields, options: Mapping[str, str], request: ChatRequest, *, timeout: float
    ) -> AsyncIterator[ChatEvent]:
        deadline = _deadline(timeout)
        call = generate_call(request)
        state = StreamState()
        # Leaving this block (finished, failed, cancelled, or closed early by the consumer)
        # closes the HTTP response, and so its connection.
        async with _connected(self._connect, secret, options, timeout, deadline, self._provider) as client:
            opening = client.aio.models.generate_content_stream(
                model=request.model, contents=call.contents, config=call.config
            )
            chunks = await _bounded(opening, deadline, self._provider)
            while True:
                try:
                    chunk = await _bounded(anext(chunks), deadline, self._provider)
                except StopAsyncIteration:
                    break
                for event in state.feed(chunk):
                    yield event
        yield state.end()


class GoogleEmbedder:
    def __init__(self, connect: Connector, provider: str) -> None:
        self._connect = connect
        self._provider = provider

    async def embed(
        self, secret: SecretFields, options: Mapping[str, str], request: EmbedRequest, *, timeout: float
    ) -> EmbedResponse:
        deadline = _deadline(timeout)
        config = embed_config(request)
        contents: list[types.Content] = [
            types.Content(role="user", parts=[types.Part(text=text)]) for text in request.inputs
        ]
        async with _connected(self._connect, secret, options, timeout, deadline, self._provider) as client:
            embedding = client.aio.models.embed_content(model=request.model, contents=contents, config=config)
            response = await _bounded(embedding, deadline, self._provider)
        vectors = [list(e.values or []) for e in response.embeddings or []]
        if len(vectors) != len(request.inputs):
            raise ProviderUnavailable(
                f"{self._provider} returned {len(vectors)} embeddings for {len(request.inputs)} inputs"
            )
        # Vertex's predict reports tokens per input; the Gemini API reports none.
        tokens = sum(int(e.statistics.token_count or 0) for e in response.embeddings or [] if e.statistics)
        # No request_id: Google returns none with embeddings (no responseId, no header).
        return EmbedResponse(
            vectors=vectors, usage=Usage(input_tokens=tokens, total_tokens=tokens), model=request.model
        )


def embed_config(request: EmbedRequest) -> types.EmbedContentConfig:
    settings: dict[str, object] = {}
    if request.dimensions is not None:
        settings["output_dimensionality"] = request.dimensions
    if request.input_type is not None:
        settings["task_type"] = _TASK_TYPES[request.input_type]
    unknown = sorted(set(request.provider_options) - _EMBED_OPTIONS)
    if unknown:
        raise InvalidRequest(f"unsupported provider_options: {', '.join(unknown)}")
    settings.update(request.provider_options)
    try:
        return types.EmbedContentConfig.model_validate(settings)
    except ValueError as exc:
        raise InvalidRequest(f"invalid provider_options: {exc}") from None


def count_models(options: Mapping[str, str], models: list[types.Model]) -> dict[str, str]:
    return {"models": str(len(models))}


class GoogleModelsVerifier:
    """Verify by listing models: a real authenticated call that spends no tokens."""

    def __init__(
        self,
        connect: Connector,
        provider: str,
        list_config: types.ListModelsConfig,
        detail: Callable[[Mapping[str, str], list[types.Model]], dict[str, str]] = count_models,
    ) -> None:
        self._connect = connect
        self._provider = provider
        self._list_config = list_config
        self._detail = detail

    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        deadline = _deadline(timeout)
        try:
            async with _connected(
                self._connect, secret, options, timeout, deadline, self._provider
            ) as client:
                listing = client.aio.models.list(config=self._list_config)
                pager = await _bounded(listing, deadline, self._provider)
        except (AuthenticationFailed, PermissionDenied) as exc:
            # The provider's verdict on the credential (a bad key, a revoked service-account
            # key, no access to the project): an answer. Anything else could not tell: raised.
            return VerifyResult(
                valid=False, reason=f"provider rejected the key ({exc.provider_status}): {exc}"
            )
        return VerifyResult(valid=True, reason="ok", detail=self._detail(options, list(pager.page)))
