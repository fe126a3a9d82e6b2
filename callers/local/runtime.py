"""The in-process runtime: each model loaded once per process, encoding on a worker thread.

- Loading is lazy (the first call that needs a model pays for importing torch and
  reading the weights, a few seconds) and thread-safe: one lock per process, so that
  concurrent first calls load the model once.
- Every blocking step (import, load, tokenize, encode) runs on one dedicated worker
  thread, never on the event loop. One thread is the concurrency bound on purpose:
  torch already spreads one batch over every core, so two batches at once only
  contend, and a fast tokenizer must not be used from two threads at once. Batches of
  concurrent requests queue on that thread in arrival order, so a long ingestion does
  not hold back a short query for longer than one batch.
- Offline: HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE are set before the first import of
  sentence-transformers, and the model is opened with local_files_only from its
  package's folder: nothing is downloaded.

sentence-transformers is imported by name (importlib) and used through the small
protocol below, so that type-checking the callers does not pull in torch's sources
and does not need the extra installed.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from callers.base import MissingExtra, ProviderUnavailable
from callers.local.models import EXTRA, LocalModel, weights_path

T = TypeVar("T")

# sentence-transformers' own inner batch; the caller hands it at most this many texts.
ENCODE_BATCH = 32


class _Tokenizer(Protocol):
    def __call__(self, texts: list[str], **kwargs: Any) -> Any: ...


class _Encoder(Protocol):
    """The part of sentence_transformers.SentenceTransformer used here."""

    max_seq_length: int | None
    tokenizer: _Tokenizer

    def encode(self, inputs: list[str], **kwargs: Any) -> Any: ...

    def get_embedding_dimension(self) -> int | None: ...


class InputTooLong(Exception):
    """An input longer than the model reads, when the request asked not to truncate."""

    def __init__(self, position: int, tokens: int, limit: int) -> None:
        super().__init__(f"input {position} has {tokens} tokens, over the model's {limit}")
        self.position = position  # in the batch handed to encode
        self.tokens = tokens
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Encoded:
    vectors: list[list[float]]  # unit length, in the order of the texts
    tokens: list[int]  # tokens each text was read as (after truncation)


@dataclass(frozen=True, slots=True)
class LoadedModel:
    model: LocalModel
    encoder: _Encoder
    max_tokens: int  # the model's max_seq_length: longer inputs are truncated to it

    def encode(self, texts: list[str], *, truncate: bool) -> Encoded:
        """Blocking: tokenize (to count and to check length), then embed, normalized."""
        # Truncating here too (when allowed) keeps a huge input from being tokenized whole
        # only to be counted; refusing needs the full length, to say it.
        limit = {"truncation": True, "max_length": self.max_tokens} if truncate else {"truncation": False}
        ids = self.encoder.tokenizer(texts, verbose=False, **limit)["input_ids"]
        lengths = [len(row) for row in ids]
        if not truncate:
            for position, length in enumerate(lengths):
                if length > self.max_tokens:
                    raise InputTooLong(position, length, self.max_tokens)
        vectors = self.encoder.encode(
            texts,
            batch_size=ENCODE_BATCH,
            normalize_embeddings=True,  # unit vectors: cosine similarity is their dot product
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        rows: list[list[float]] = vectors.tolist()
        if len(rows) != len(texts) or any(len(row) != self.model.dimensions for row in rows):
            raise ProviderUnavailable(
                f"the local model {self.model.name} gave vectors of an unexpected shape "
                f"({len(rows)} for {len(texts)} inputs)"
            )
        return Encoded(
            vectors=rows,
            tokens=[min(length, self.max_tokens) for length in lengths],
        )


class Runtime:
    """The process's loaded models and its encoding thread; created empty, filled on use."""

    def __init__(self) -> None:
        self._load_lock = threading.Lock()  # held while loading (seconds), on the worker thread
        self._executor_lock = threading.Lock()  # held for an instant, on the event loop
        self._loaded: dict[str, LoadedModel] = {}
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` on the encoding thread; the event loop only waits for it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread(), work, *args)

    async def model(self, model: LocalModel) -> LoadedModel:
        loaded = self._loaded.get(model.name)
        if loaded is not None:
            return loaded
        return await self.run(self.load, model)

    def load(self, model: LocalModel) -> LoadedModel:
        """Blocking, thread-safe: the model, loaded on the first call only."""
        with self._load_lock:
            loaded = self._loaded.get(model.name)
            if loaded is None:
                loaded = _load(model)
                self._loaded[model.name] = loaded
            return loaded

    def _thread(self) -> ThreadPoolExecutor:
        # Made on first use, not at import: a hub that forks its workers must not fork threads.
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-models")
            return self._executor


def _load(model: LocalModel) -> LoadedModel:
    folder = weights_path(model)
    sentence_transformers = _import_sdk()
    try:
        encoder = cast(
            _Encoder,
            sentence_transformers.SentenceTransformer(
                str(folder), device="cpu", local_files_only=True, trust_remote_code=False
            ),
        )
    except (OSError, ValueError, RuntimeError) as exc:
        # Files present but unreadable (a broken install): the hub cannot serve this model.
        raise ProviderUnavailable(
            f"the local model {model.name} could not be loaded from {folder}: {type(exc).__name__}: {exc}"
        ) from exc
    dimensions = encoder.get_embedding_dimension()
    if dimensions != model.dimensions:
        raise ProviderUnavailable(
            f"the local model in {folder} gives {dimensions} dimensions, not {model.dimensions}"
        )
    return LoadedModel(model=model, encoder=encoder, max_tokens=int(encoder.max_seq_length or 0))


def _import_sdk() -> Any:
    # Must precede the first import of huggingface_hub/transformers, which read them once.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        module = importlib.import_module("sentence_transformers")
        transformers_logging = importlib.import_module("transformers.utils.logging")
    except ImportError as exc:
        raise MissingExtra(EXTRA, str(exc)) from exc
    # The weight-loading progress bar would go to the hub's stderr, once per model.
    transformers_logging.disable_progress_bar()
    return module


# One per process: the models are shared by every credential and every call.
RUNTIME = Runtime()
