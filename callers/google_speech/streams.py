"""Bidirectional gRPC streams of the google-cloud SDKs: opening one, and reading it
while the client may still be sending (silence then is not the provider's fault)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any


async def open_stream(method: Callable[..., Any], requests: AsyncIterator[Any], metadata: Any) -> Any:
    """The call of a streaming SDK method (async clients return it from a coroutine)."""
    result = method(requests=requests, retry=None, metadata=metadata)
    if asyncio.iscoroutine(result):
        result = await result
    return result


async def next_until_quiet(responses: Any, sent: asyncio.Event, timeout: float) -> Any:
    """The next response; while the client still sends (`sent` unset), silence is no timeout."""
    nxt = asyncio.ensure_future(responses.__anext__())
    try:
        while True:
            waiter = asyncio.ensure_future(sent.wait())
            done, _ = await asyncio.wait({nxt, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if nxt in done:
                waiter.cancel()
                return nxt.result()
            # input ended: from now on the provider has `timeout` to answer
            return await asyncio.wait_for(asyncio.shield(nxt), timeout=timeout)
    finally:
        if not nxt.done():
            nxt.cancel()
            with contextlib.suppress(BaseException):
                await nxt
