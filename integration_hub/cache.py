"""Row cache: ciphertext credential rows and token rows, never plaintext.

Two tiers. L1 is a bounded in-process LRU with a TTL. With HUB_REDIS_URL set, L2
is Redis, shared by every replica, and a pub/sub channel carries invalidations:
a write on any replica deletes the keys from Redis and tells every replica
(itself included) to drop them from L1. While the subscription is down a
replica cannot hear invalidations, so it bypasses L1 until it has resubscribed
and flushed L1. A Redis fault never fails a call: the loader (the store) answers.

What is cached is exactly what the store holds (sealed ciphertext, token hashes),
so a cache dump reveals nothing the database would not.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import fields
from datetime import datetime
from typing import Any, TypeVar

import orjson

from integration_hub.store.base import CredentialRow, TokenRow

log = logging.getLogger("integration_hub.cache")

T = TypeVar("T", CredentialRow, TokenRow)
INVALIDATION_CHANNEL = "integration-hub:invalidate"
KEY_PREFIX = "integration-hub:row:"


def credential_keys(row: CredentialRow) -> list[str]:
    return [f"cred:{row.tenant_id}:id:{row.id}", f"cred:{row.tenant_id}:name:{row.name}"]


def credential_key_by_ref(tenant_id: str, by: str, ref: str) -> str:
    return f"cred:{tenant_id}:{by}:{ref}"


def token_key(token_hash: str) -> str:
    return f"token:{token_hash}"


class _LocalLRU:
    def __init__(self, max_entries: int, ttl: float) -> None:
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl

    def get(self, key: str) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: Any) -> None:
        self._entries[key] = (time.monotonic() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def drop(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


# --- row codecs for Redis (bytes as base64, datetimes as ISO-8601) ----------


def encode_row(row: CredentialRow | TokenRow) -> bytes:
    data: dict[str, Any] = {"kind": type(row).__name__}
    for f in fields(row):
        value = getattr(row, f.name)
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        elif isinstance(value, datetime):
            value = value.isoformat()
        data[f.name] = value
    return orjson.dumps(data)


def decode_row(raw: bytes) -> CredentialRow | TokenRow:
    data = orjson.loads(raw)
    kind = data.pop("kind")
    if kind == "CredentialRow":
        data["ciphertext"] = base64.b64decode(data["ciphertext"])
        data["secret_fields"] = tuple(data["secret_fields"])
        for name in ("created_at", "updated_at"):
            data[name] = datetime.fromisoformat(data[name])
        return CredentialRow(**data)
    if kind == "TokenRow":
        data["scopes"] = tuple(data["scopes"])
        for name in ("created_at", "expires_at", "revoked_at"):
            data[name] = datetime.fromisoformat(data[name]) if data[name] else None
        return TokenRow(**data)
    raise ValueError(f"unknown cached row kind {kind!r}")


class RowCache:
    """Read-through cache of store rows; see the module docstring."""

    def __init__(self, *, ttl: float = 30.0, max_entries: int = 10_000, redis_url: str | None = None) -> None:
        self._ttl = ttl
        self._l1 = _LocalLRU(max_entries, ttl)
        self._redis_url = redis_url
        self._redis: Any = None
        self._listener: asyncio.Task[None] | None = None
        # True only while the invalidation subscription is live (always True without Redis).
        self._l1_trusted = redis_url is None
        self._subscribed = asyncio.Event()

    @property
    def shared(self) -> bool:
        return self._redis_url is not None

    async def start(self, *, listen: bool = True) -> None:
        """Connect to Redis, if configured. A CLI that only publishes invalidations
        passes listen=False (it keeps no L1 worth invalidating)."""
        if self._redis_url is None:
            return
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(
            self._redis_url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=10
        )
        if listen:
            self._listener = asyncio.create_task(self._listen_for_invalidations(), name="cache-invalidations")

    async def wait_subscribed(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout)
        return self._subscribed.is_set()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._redis is not None:
            await self._redis.aclose()

    async def ping(self) -> None:
        """Raise unless Redis answers (no-op without Redis)."""
        if self._redis is not None:
            await self._redis.ping()

    async def get(self, key: str, loader: Callable[[], Awaitable[T | None]]) -> T | None:
        if self._l1_trusted:
            hit = self._l1.get(key)
            if hit is not None:
                return hit  # type: ignore[no-any-return]
        row: Any = await self._get_shared(key)
        if row is None:
            row = await loader()
            if row is None:
                return None
            await self._put_shared(key, row)
        if self._l1_trusted:
            self._l1.put(key, row)
        return row  # type: ignore[no-any-return]

    async def invalidate(self, keys: list[str]) -> None:
        """Drop keys here, in Redis, and (via pub/sub) on every other replica."""
        self._l1.drop(keys)
        if self._redis is None:
            return
        try:
            await self._redis.delete(*(KEY_PREFIX + k for k in keys))
            await self._redis.publish(INVALIDATION_CHANNEL, orjson.dumps(keys))
        except Exception as exc:  # a Redis fault must not fail the write that already happened
            log.warning("cache invalidation via Redis failed: %s", type(exc).__name__)

    async def _get_shared(self, key: str) -> CredentialRow | TokenRow | None:
        if self._redis is None:
            return None
        try:
            raw = await self._redis.get(KEY_PREFIX + key)
        except Exception as exc:
            log.warning("Redis read failed, reading the store: %s", type(exc).__name__)
            return None
        return decode_row(raw) if raw is not None else None

    async def _put_shared(self, key: str, row: CredentialRow | TokenRow) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.set(KEY_PREFIX + key, encode_row(row), px=int(self._ttl * 1000))
        except Exception as exc:
            log.warning("Redis write failed: %s", type(exc).__name__)

    async def _listen_for_invalidations(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(INVALIDATION_CHANNEL)
                # Anything cached before this point may have missed an invalidation.
                self._l1.clear()
                self._l1_trusted = True
                self._subscribed.set()
                backoff = 0.1
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._l1.drop(orjson.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cache invalidation subscription lost (%s); bypassing L1", type(exc).__name__)
            finally:
                self._l1_trusted = False
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
