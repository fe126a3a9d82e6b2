"""The audit trail's writer: batched off the request path, and a close that neither
cancels a write in flight (which would leave its statement running in SQLite's thread
and write the batch twice) nor hangs on a store that does not answer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from integration_hub.audit import AuditLog
from integration_hub.store import Store, open_store
from integration_hub.store.base import AuditEvent


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    await opened.connect()
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


class GatedStore:
    """The real store; each insert_audit_events waits for `gate` once it has started."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.batches: list[int] = []

    async def insert_audit_events(self, events: Sequence[AuditEvent]) -> None:
        self.batches.append(len(events))
        self.started.set()
        await self.gate.wait()
        await self.store.insert_audit_events(events)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def stored(store: Store) -> list[AuditEvent]:
    return await store.list_audit_events(tenant_id="acme", limit=1000)


async def test_events_arriving_together_are_written_as_one_batch(store: Store) -> None:
    gated = GatedStore(store)
    gated.gate.set()
    audit = AuditLog(gated, coalesce_seconds=0.05)  # type: ignore[arg-type]
    audit.start()
    for i in range(50):
        audit.record("credential.decrypt", "ok", tenant_id="acme", request_id=f"r{i}")
    await asyncio.sleep(0.3)
    assert gated.batches == [50]
    await audit.close()
    assert len(await stored(store)) == 50


async def test_close_lets_the_write_in_flight_finish_and_writes_the_rest_once(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="integration_hub.audit")
    gated = GatedStore(store)
    audit = AuditLog(gated, coalesce_seconds=0.0)  # type: ignore[arg-type]
    audit.start()
    audit.record("credential.decrypt", "ok", tenant_id="acme", request_id="first")
    await asyncio.wait_for(gated.started.wait(), 5)
    audit.record("credential.decrypt", "ok", tenant_id="acme", request_id="second")
    closing = asyncio.create_task(audit.close())
    await asyncio.sleep(0.2)
    assert not closing.done()  # waiting for the write in flight, not cancelling it
    gated.gate.set()
    await asyncio.wait_for(closing, 5)
    assert sorted(e.request_id for e in await stored(store)) == ["first", "second"]  # each once
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


class HangsOnce(GatedStore):
    """The first write never answers (a store that accepted the statement and went
    silent); later ones go through."""

    async def insert_audit_events(self, events: Sequence[AuditEvent]) -> None:
        if not self.batches:
            self.batches.append(len(events))
            self.started.set()
            await asyncio.Event().wait()
        self.batches.append(len(events))
        await self.store.insert_audit_events(events)


async def test_close_gives_up_on_a_write_that_never_answers_and_writes_the_queue_again(
    store: Store,
) -> None:
    hanging = HangsOnce(store)
    audit = AuditLog(hanging, coalesce_seconds=0.0)  # type: ignore[arg-type]
    audit.start()
    audit.record("credential.decrypt", "ok", tenant_id="acme", request_id="stuck")
    await asyncio.wait_for(hanging.started.wait(), 5)
    started = time.monotonic()
    await asyncio.wait_for(audit.close(wait_seconds=0.3), 5)
    assert 0.3 <= time.monotonic() - started < 2.0  # waited its bound, then moved on
    assert [e.request_id for e in await stored(store)] == ["stuck"]
    assert audit.pending == 0
