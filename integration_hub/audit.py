"""The audit trail: who used or changed which credential or key, and how it went.

Events are queued and written to the store in batches by one background task, so
auditing every decrypt costs the call a queue append, not a database round trip.
The queue is bounded: when the store is down and it fills, the oldest events are
dropped and a counter and a log line say how many (the log line itself carries
the event, so nothing is lost silently). Events never carry a secret: only ids,
names, outcomes and reasons.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime

from integration_hub.store.base import AuditEvent, Store

log = logging.getLogger("integration_hub.audit")
# How long the writer lets events gather after the first before it writes them.
COALESCE_SECONDS = 0.2
# How long close() lets the writer finish the batch it is writing.
CLOSE_WAIT_SECONDS = 5.0


class AuditLog:
    def __init__(
        self,
        store: Store,
        *,
        max_queue: int = 100_000,
        batch_size: int = 500,
        coalesce_seconds: float = COALESCE_SECONDS,
    ) -> None:
        self._store = store
        self._coalesce_seconds = coalesce_seconds
        self._queue: deque[AuditEvent] = deque()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        # One flush at a time: the writer task and an explicit flush() must not
        # both write (and both dequeue) the same batch.
        self._flushing = asyncio.Lock()
        self._stopping = False
        self.dropped = 0

    def record(
        self,
        action: str,
        outcome: str,
        *,
        tenant_id: str = "",
        credential_id: str = "",
        actor: str = "",
        request_id: str = "",
        detail: Mapping[str, str] | None = None,
    ) -> None:
        event = AuditEvent(
            at=datetime.now(UTC),
            action=action,
            outcome=outcome,
            tenant_id=tenant_id,
            credential_id=credential_id,
            actor=actor,
            request_id=request_id,
            detail=dict(detail or {}),
        )
        # Successful decrypts happen on every provider call: recorded in the store, logged at DEBUG.
        level = logging.DEBUG if (action, outcome) == ("credential.decrypt", "ok") else logging.INFO
        if log.isEnabledFor(level):  # the extra dict is not built for a line nobody writes
            log.log(
                level,
                "audit %s %s",
                action,
                outcome,
                extra={
                    "audit": {
                        "tenant": tenant_id,
                        "credential": credential_id,
                        "actor": actor,
                        "request_id": request_id,
                        **event.detail,
                    }
                },
            )
        if len(self._queue) >= self._max_queue:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(event)
        self._wakeup.set()

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_forever(), name="audit-writer")

    async def flush(self) -> None:
        """Write everything queued now (used by the CLI and at shutdown)."""
        async with self._flushing:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
                try:
                    await self._store.insert_audit_events(batch)
                except BaseException:
                    self._queue.extendleft(reversed(batch))  # back in front, in order, for the next try
                    raise

    async def close(self, wait_seconds: float = CLOSE_WAIT_SECONDS) -> None:
        """Stop the writer and write what is queued. The writer is let finish the batch it
        is writing: cancelling it mid-statement would leave that statement running in the
        store's thread (SQLite) while the final flush starts another, and requeue events
        that may already be committed."""
        if self._writer is not None:
            self._stopping = True
            self._wakeup.set()
            done, _ = await asyncio.wait({self._writer}, timeout=wait_seconds)
            if not done:  # a store that does not answer: give up on the batch in flight
                self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._writer
        try:
            await self.flush()
        except Exception as exc:
            log.error(
                "audit: %d event(s) could not be written at shutdown: %s",
                len(self._queue),
                type(exc).__name__,
            )

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def _write_forever(self) -> None:
        backoff = 0.2
        while not self._stopping:
            await self._wakeup.wait()
            # Under load every call adds an event: waiting a moment turns many one-event
            # transactions into one batch (the store's cost is per statement, not per row).
            await self._pause(self._coalesce_seconds)
            self._wakeup.clear()
            try:
                await self.flush()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "audit: store write failed (%s); %d event(s) queued", type(exc).__name__, len(self._queue)
                )
                await self._pause(backoff)
                backoff = min(backoff * 2, 5.0)
                self._wakeup.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless the log is closing (close() then writes what is queued itself)."""
        if not self._stopping:
            await asyncio.sleep(seconds)
