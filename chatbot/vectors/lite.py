"""Milvus Lite specifics: what a local file URI is, its in-process server, a search hint.

pymilvus serves a ``*.db`` path by starting Milvus Lite's gRPC server inside this
process (milvus_lite.server_manager) and connecting to it over loopback; closing the
client does not stop that server nor release the file's lock, so the store releases it
when the last store on that file closes.

The partition hint: Milvus routes a partition-key collection's rows to hash buckets and
a server prunes buckets from the key in the filter. Milvus Lite 3.2 does not prune, and
its search dedups every row of every in-scope segment in a Python loop, so a search costs
O(all rows): at 100,000 chunks over 50 bots, 151 ms p50 without the hint and 17-21 ms
with it (bench/chatbot_retrieval.py's file, on this 2-core machine). Naming
the bot's bucket (md5 of the key modulo the bucket count, as milvus_lite's engine routes
inserts) restricts it to that bucket. It is only a hint: the bot filter is still applied,
so a wrong bucket could hide a bot's chunks but never show another's; it is used only on
the Lite versions it was checked against and when the collection's partitions are the
expected buckets (tests/chatbot/test_vectors.py searches many bots through it).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit

SERVER_SCHEMES = ("http", "https", "tcp")
_HINT_VERSIONS = ("3.2.",)  # milvus-lite releases whose bucket routing the hint mirrors
_BUCKET_PREFIX = "_pk_"

_lock = threading.Lock()
_open_counts: dict[str, int] = {}


def is_server_uri(uri: str) -> bool:
    return urlsplit(uri).scheme.lower() in SERVER_SCHEMES


def local_path(uri: str) -> str:
    """The absolute path of a Milvus Lite file URI, checked as pymilvus will need it."""
    if "://" in uri:
        raise ValueError(f"vector store URI scheme must be one of {', '.join(SERVER_SCHEMES)} or a file path")
    if not uri.endswith(".db"):
        raise ValueError("a Milvus Lite vector store is a file path ending in .db")
    path = os.path.abspath(uri)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def redacted(uri: str) -> str:
    """uri fit for logs and errors: user and password (a Milvus token) removed."""
    if not is_server_uri(uri):
        return uri
    parts = urlsplit(uri)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def acquire(path: str) -> None:
    with _lock:
        _open_counts[path] = _open_counts.get(path, 0) + 1


def release(path: str) -> None:
    """Stop the in-process Lite server for path when its last store closes (frees the lock)."""
    with _lock:
        count = _open_counts.get(path, 0) - 1
        if count > 0:
            _open_counts[path] = count
            return
        _open_counts.pop(path, None)
    from milvus_lite.server_manager import server_manager_instance  # type: ignore[import-untyped]

    server_manager_instance.release_server(path)


def hint_supported() -> bool:
    try:
        version = importlib.metadata.version("milvus-lite")
    except importlib.metadata.PackageNotFoundError:
        return False
    return version.startswith(_HINT_VERSIONS)


def bucket_count(partitions: Iterable[str]) -> int | None:
    """The number of partition-key buckets if partitions are exactly Lite's layout, else None."""
    buckets = {p for p in partitions if p != "_default"}
    n = len(buckets)
    if n == 0 or buckets != {f"{_BUCKET_PREFIX}{i}" for i in range(n)}:
        return None
    return n


def bucket_of(key: str, buckets: int) -> str:
    # md5 here is milvus_lite's routing hash, not a security measure.
    digest = hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()
    return f"{_BUCKET_PREFIX}{int(digest, 16) % buckets}"
