"""Usage accounting: the UsageRecorder (batching off the hot path, close, outages, overflow,
refused batches) on the real stores, and through a running hub the rows every call
leaves and UsageService.GetUsage over gRPC and REST.

Postgres outages are a TcpProxy (tests/store/tcp_proxy.py) in front of a fresh
database, stopped and started by the test; the shared server is never touched.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import REGISTRY

from integration_hub.call_record import CallRecord
from integration_hub.store import Store, StoreUnavailable, open_store
from integration_hub.store.base import UsageRow
from integration_hub.usage import MAX_COUNT, MAX_STATEMENTS_PER_BATCH, MAX_TEXT, UsageRecorder
from integration_hub.v1 import chat_pb2 as chat
from integration_hub.v1 import chat_pb2_grpc, usage_pb2_grpc
from integration_hub.v1 import credentials_pb2 as cpb
from integration_hub.v1 import usage_pb2 as upb
from tests.fakes.openai_server import ChatReply, FakeOpenAI
from tests.harness import HubUnderTest, eventually, running_hub, settings_for
from tests.store.tcp_proxy import TcpProxy

KEY = "sk-test-UsagePath0123456789abcd"
DOWN_KEY = "sk-test-UsageDown0123456789abcd"


# --- helpers ---------------------------------------------------------------------------------


def record(i: int = 0, **overrides: Any) -> CallRecord:
    fields: dict[str, Any] = {
        "tenant_id": "acme",
        "operation": "chat",
        "model": "gpt-4o",
        "request_id": f"r{i:06d}",
        "started_at": datetime(2025, 3, 1, tzinfo=UTC) + timedelta(microseconds=i),
        "credential_id": "c1",
        "credential_name": "main",
        "provider": "openai",
        "input_tokens": 10,
        "output_tokens": 5,
        "cached_tokens": 1,
        "latency_seconds": 0.1,
        "upstream_seconds": 0.08,
    }
    fields.update(overrides)
    return CallRecord(**fields)


class CountingStore:
    """The real store; its insert_usage_records calls are counted (batch sizes kept)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.batches: list[int] = []

    async def insert_usage_records(self, rows: Sequence[UsageRow]) -> None:
        self.batches.append(len(rows))
        await self.store.insert_usage_records(rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def rows_of(store: Store, tenant: str = "acme") -> list[UsageRow]:
    return await store.list_usage_records(tenant, limit=100_000)


async def wait_for_rows(store: Store, count: int, timeout: float = 5.0) -> list[UsageRow]:
    async def enough() -> list[UsageRow] | None:
        rows = await rows_of(store)
        return rows if len(rows) >= count else None

    found: list[UsageRow] | None = await eventually(enough, timeout=timeout, interval=0.02)
    assert found is not None, f"fewer than {count} rows after {timeout}s"
    return found


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def via_proxy(url: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
async def store(backend_url: str) -> AsyncIterator[Store]:
    """A connected, migrated store of each backend on a fresh database."""
    opened = open_store(backend_url)
    await opened.connect()
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    migrated = open_store(postgres_url)
    await migrated.connect()
    await migrated.migrate()
    await migrated.close()
    target = urlsplit(postgres_url)
    forwarder = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await forwarder.start()
    try:
        yield forwarder
    finally:
        await forwarder.stop()


@pytest.fixture
async def proxied_store(postgres_url: str, proxy: TcpProxy) -> AsyncIterator[Store]:
    """A PostgresStore reaching its (fresh, migrated) database only through `proxy`."""
    opened = open_store(via_proxy(postgres_url, proxy.port))
    await opened.connect()
    try:
        yield opened
    finally:
        await opened.close()


# --- the recorder: batching -----------------------------------------------------------------


async def test_many_calls_become_a_few_batched_inserts_off_the_hot_path(store: Store) -> None:
    counting = CountingStore(store)
    recorder = UsageRecorder(counting, batch_size=500, flush_interval=0.2)
    recorder.start()
    try:
        records = [record(i) for i in range(1200)]
        started = time.perf_counter()
        for r in records:
            recorder.observe(r)
        observing = time.perf_counter() - started
        # The hot path is an append: 1200 calls in well under 50 ms (no I/O, no await).
        assert observing < 0.05, observing
        rows = await wait_for_rows(store, 1200)
        # Three statements: two full batches and the rest.
        assert sorted(counting.batches, reverse=True) == [500, 500, 200]
        assert sorted(r.request_id for r in rows) == [f"r{i:06d}" for i in range(1200)]
        assert recorder.written == 1200
        assert recorder.pending == 0
    finally:
        await recorder.close(5)


async def test_a_lone_record_waits_for_the_flush_interval_then_is_written(store: Store) -> None:
    counting = CountingStore(store)
    recorder = UsageRecorder(counting, flush_interval=0.8)
    recorder.start()
    try:
        observed = time.monotonic()
        recorder.observe(record(1))
        for i in range(2, 6):  # arriving within the interval: the same batch
            await asyncio.sleep(0.02)
            recorder.observe(record(i))
        await asyncio.sleep(0.2)
        assert await rows_of(store) == []  # not written per call
        await wait_for_rows(store, 5, timeout=3)
        assert 0.7 <= time.monotonic() - observed < 2.5
        assert counting.batches == [5]
    finally:
        await recorder.close(5)


async def test_close_writes_what_is_queued_at_once(store: Store) -> None:
    recorder = UsageRecorder(store, flush_interval=60)
    recorder.start()
    for i in range(10):
        recorder.observe(record(i))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await recorder.close(5)
    assert time.monotonic() - started < 1.0  # not the 60 s interval
    assert len(await rows_of(store)) == 10
    assert recorder.pending == 0
    assert recorder.lost_at_shutdown == 0


async def test_close_of_a_recorder_never_started_still_writes_its_queue(store: Store) -> None:
    recorder = UsageRecorder(store)
    for i in range(3):
        recorder.observe(record(i))
    await recorder.close(5)
    assert len(await rows_of(store)) == 3


async def test_odd_values_are_sanitised_so_the_batch_is_written(store: Store) -> None:
    recorder = UsageRecorder(store)
    odd = [
        record(1, model="gpt\x00-4o"),  # Postgres text cannot hold NUL
        record(2, model="bad-\ud800-surrogate"),  # not encodable as UTF-8
        record(3, model="m" * 100_000),
        record(4, input_tokens=-5, output_tokens=2**70, cached_tokens=-1),
        record(5, latency_seconds=math.nan, upstream_seconds=math.inf),
        record(6, model="normal"),
    ]
    for r in odd:
        recorder.observe(r)
    await recorder.close(5)
    assert recorder.rejected == 0
    by_id = {r.request_id: r for r in await rows_of(store)}
    assert len(by_id) == 6
    assert by_id["r000001"].model == "gpt-4o"
    assert by_id["r000002"].model == "bad-?-surrogate"
    assert by_id["r000003"].model == "m" * MAX_TEXT
    assert (by_id["r000004"].input_tokens, by_id["r000004"].output_tokens) == (0, MAX_COUNT)
    assert by_id["r000004"].cached_tokens == 0
    assert (by_id["r000005"].latency_ms, by_id["r000005"].upstream_ms) == (0.0, 0.0)


# --- the recorder: outages, overflow, refusals --------------------------------------------------


async def test_a_postgres_outage_loses_nothing_that_was_queued(
    proxied_store: Store, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="integration_hub.usage")
    recorder = UsageRecorder(proxied_store, batch_size=100, flush_interval=0.05)
    recorder.start()
    try:
        for i in range(50):
            recorder.observe(record(i))
        await wait_for_rows(proxied_store, 50)

        await proxy.stop()  # Postgres "restarts": connections cut, new ones refused
        for i in range(50, 350):
            recorder.observe(record(i))
            if i % 60 == 0:
                await asyncio.sleep(0.02)  # calls keep coming during the outage
        outage_noticed = await eventually(
            lambda: _async(any("store unavailable" in r.getMessage() for r in caplog.records)), timeout=5
        )
        assert outage_noticed
        # Queued, none lost (between two attempts: during one, its batch is out of the queue).
        assert await eventually(lambda: _async(recorder.pending == 300), timeout=5)
        await asyncio.sleep(0.5)  # a few failed retries

        await proxy.start()
        rows = await wait_for_rows(proxied_store, 350, timeout=15)
        assert sorted(r.request_id for r in rows) == [f"r{i:06d}" for i in range(350)]  # each exactly once
        assert (recorder.dropped, recorder.rejected, recorder.pending) == (0, 0, 0)
        warning = next(r.getMessage() for r in caplog.records if "store unavailable" in r.getMessage())
        assert "record(s) queued, retrying" in warning
        assert not [
            r for r in caplog.records if r.name == "integration_hub.usage" and r.levelno >= logging.ERROR
        ]
    finally:
        await recorder.close(5)


class AnswerLostOnce(CountingStore):
    """The real store; the first batch is committed, then the "connection drops" before
    the answer arrives (StoreUnavailable), as in a Postgres restart mid-commit."""

    async def insert_usage_records(self, rows: Sequence[UsageRow]) -> None:
        await super().insert_usage_records(rows)
        if len(self.batches) == 1:
            raise StoreUnavailable("connection lost after the commit")


async def test_a_batch_whose_commit_answer_was_lost_is_not_counted_twice(store: Store) -> None:
    lossy = AnswerLostOnce(store)
    recorder = UsageRecorder(lossy, batch_size=100, flush_interval=0.02)
    recorder.start()
    try:
        for i in range(40):
            recorder.observe(record(i))
        assert await eventually(lambda: _async(len(lossy.batches) >= 2), timeout=5)
        assert await eventually(lambda: _async(recorder.pending == 0), timeout=5)
        rows = await rows_of(store)
        assert lossy.batches[:2] == [40, 40]  # written twice ...
        assert sorted(r.request_id for r in rows) == [f"r{i:06d}" for i in range(40)]  # ... stored once
    finally:
        await recorder.close(5)


async def _async(value: Any) -> Any:
    return value


async def test_still_down_at_shutdown_the_loss_is_counted_and_said(
    proxied_store: Store, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="integration_hub.usage")
    before = sample("hub_usage_records_dropped_total", {"reason": "shutdown"})
    recorder = UsageRecorder(proxied_store, flush_interval=0.05)
    recorder.start()
    await proxy.stop()
    for i in range(7):
        recorder.observe(record(i))
    started = time.monotonic()
    await recorder.close(1.0)
    assert time.monotonic() - started < 3.0  # bounded by the drain time, not a hang
    assert recorder.lost_at_shutdown == 7
    assert sample("hub_usage_records_dropped_total", {"reason": "shutdown"}) - before == 7
    assert any(
        "7 record(s) could not be written before shutdown" in r.getMessage() and r.levelno == logging.ERROR
        for r in caplog.records
    )


async def test_queue_overflow_drops_the_oldest_and_counts_and_logs_it(
    proxied_store: Store, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="integration_hub.usage")
    before = sample("hub_usage_records_dropped_total", {"reason": "queue_full"})
    recorder = UsageRecorder(proxied_store, max_queue=100, batch_size=50, flush_interval=0.05)
    recorder.start()
    try:
        await proxy.stop()
        for i in range(250):
            recorder.observe(record(i))
        assert recorder.pending == 100
        assert recorder.dropped == 150
        said = await eventually(
            lambda: _async(any("dropped the 150 oldest" in r.getMessage() for r in caplog.records)),
            timeout=5,
        )
        assert said
        assert sample("hub_usage_records_dropped_total", {"reason": "queue_full"}) - before == 150
        await proxy.start()
        rows = await wait_for_rows(proxied_store, 100, timeout=15)
        # The newest 100 survive, the oldest 150 are gone.
        assert sorted(r.request_id for r in rows) == [f"r{i:06d}" for i in range(150, 250)]
    finally:
        await recorder.close(5)


async def _refuse_model(store_url: str, model: str) -> None:
    """Make the real database refuse rows of `model` (a constraint or trigger, not a mock)."""
    if store_url.startswith("postgres"):
        conn = await asyncpg.connect(store_url)
        try:
            await conn.execute(f"ALTER TABLE usage_records ADD CONSTRAINT refuse CHECK (model <> '{model}')")
        finally:
            await conn.close()
        return
    import sqlite3

    path = store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON usage_records"
            f" WHEN NEW.model = '{model}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )


async def test_a_refused_record_is_dropped_and_counted_the_rest_of_its_batch_is_written(
    store: Store, backend_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="integration_hub.usage")
    await _refuse_model(backend_url, "poison")
    before = sample("hub_usage_records_dropped_total", {"reason": "rejected"})
    counting = CountingStore(store)
    recorder = UsageRecorder(counting, batch_size=500, flush_interval=0.05)
    recorder.start()
    try:
        for i in range(200):
            recorder.observe(record(i, model="poison" if i in (17, 150) else "gpt-4o"))
        rows = await wait_for_rows(store, 198)
        await asyncio.sleep(0.1)
        assert len(rows) == 198
        assert {"r000017", "r000150"}.isdisjoint(r.request_id for r in rows)
        assert recorder.rejected == 2
        assert sample("hub_usage_records_dropped_total", {"reason": "rejected"}) - before == 2
        assert len(counting.batches) <= 4 * math.ceil(math.log2(200)) + 1  # split, not row by row
        refusal = next(r for r in caplog.records if "refused" in r.getMessage())
        assert refusal.levelno == logging.ERROR
        assert "2 of a batch of 200" in refusal.getMessage()
        # The writer goes on.
        recorder.observe(record(999))
        await wait_for_rows(store, 199)
    finally:
        await recorder.close(5)


async def test_a_store_refusing_everything_costs_a_bounded_number_of_statements(
    store: Store, backend_url: str
) -> None:
    await _refuse_model(backend_url, "poison")
    counting = CountingStore(store)
    recorder = UsageRecorder(counting, batch_size=500, flush_interval=0.05)
    for i in range(500):
        recorder.observe(record(i, model="poison"))
    started = time.monotonic()
    await recorder.close(10)
    assert time.monotonic() - started < 5
    assert recorder.rejected == 500
    assert recorder.written == 0
    assert len(counting.batches) == MAX_STATEMENTS_PER_BATCH
    assert await rows_of(store) == []


async def test_a_write_that_hangs_is_timed_out_and_retried(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Another session holds an exclusive lock on the table: the COPY waits on it (a
    # database that accepts the connection but does not answer).
    caplog.set_level(logging.WARNING, logger="integration_hub.usage")
    store = open_store(postgres_url)
    await store.connect()
    await store.migrate()
    locker = await asyncpg.connect(postgres_url)
    recorder = UsageRecorder(store, flush_interval=0.05, write_timeout=0.3)
    try:
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute("LOCK TABLE usage_records IN ACCESS EXCLUSIVE MODE")
        recorder.start()
        for i in range(5):
            recorder.observe(record(i))
        timed_out = await eventually(
            lambda: _async(sum("took longer than 0.3s" in r.getMessage() for r in caplog.records) >= 2),
            timeout=5,
        )
        assert timed_out  # tried, timed out, and tried again
        assert recorder.written == 0
        assert recorder.rejected == 0
        await transaction.rollback()
        rows = await wait_for_rows(store, 5, timeout=10)
        await asyncio.sleep(0.2)
        assert len(await rows_of(store)) == len(rows) == 5  # once each: a cancelled COPY committed nothing
        assert (recorder.written, recorder.rejected, recorder.pending) == (5, 0, 0)
    finally:
        await recorder.close(5)
        await locker.close()
        await store.close()


# --- through a running hub -----------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(valid_keys={KEY}) as server:
        yield server


async def create_credential(
    hut: HubUnderTest, name: str, base_url: str, key: str = KEY, token: str | None = None
) -> str:
    created = await hut.credentials_stub().CreateCredential(
        cpb.CreateCredentialRequest(
            provider="openai", name=name, secret={"api_key": key}, options={"base_url": base_url}
        ),
        metadata=hut.auth(token or hut.tokens.admin),
    )
    return str(created.credential.id)


@pytest.fixture
async def hub(hut: HubUnderTest, fake: FakeOpenAI) -> HubUnderTest:
    await create_credential(hut, "main", fake.base_url)
    return hut


def user(text: str) -> chat.ChatMessage:
    return chat.ChatMessage(role=chat.ROLE_USER, content=[chat.ContentPart(text=text)])


def metadata(token: str, request_id: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}"), ("x-request-id", request_id)]


async def hub_rows(hut: HubUnderTest, count: int, tenant: str = "acme") -> dict[str, UsageRow]:
    """The tenant's rows by request id, once at least `count` are written."""
    recorder = hut.hub.usage
    assert recorder is not None

    async def enough() -> list[UsageRow] | None:
        await recorder.flush()
        rows = await rows_of(hut.hub.store, tenant)
        return rows if len(rows) >= count else None

    rows = await eventually(enough, timeout=5)
    assert rows is not None, f"fewer than {count} usage rows"
    return {row.request_id: row for row in rows}


async def make_calls(hut: HubUnderTest, fake: FakeOpenAI) -> None:
    """Chat, stream, embed (gRPC), chat (REST), a provider failure and an unknown credential."""
    stub, token = chat_pb2_grpc.ChatServiceStub(hut.channel), hut.tokens.invoke_only
    fake.script(ChatReply(text="Bonjour", prompt_tokens=20, completion_tokens=3, cached_tokens=8))
    await stub.Chat(
        chat.ChatRequest(credential="main", model="gpt-4o-mini", messages=[user("Hi")]),
        metadata=metadata(token, "u-chat"),
    )
    fake.script(ChatReply(text="a b c", prompt_tokens=11, completion_tokens=4))
    events = [
        e
        async for e in stub.StreamChat(
            chat.ChatRequest(credential="main", model="gpt-4o", messages=[user("Hi")]),
            metadata=metadata(token, "u-stream"),
        )
    ]
    assert events[-1].HasField("end")
    await stub.Embed(
        chat.EmbedRequest(credential="main", model="text-embedding-3-small", inputs=["one two", "three"]),
        metadata=metadata(token, "u-embed"),
    )
    fake.script(ChatReply(text="rest", prompt_tokens=5, completion_tokens=2))
    body = {
        "credential": "main",
        "model": "gpt-4o",
        "messages": [{"role": "ROLE_USER", "content": [{"text": "x"}]}],
    }
    async with hut.http.post(
        hut.http_base + "/v1/chat", json=body, headers={**hut.headers(token), "x-request-id": "u-rest"}
    ) as response:
        assert response.status == 200
    fake.force_status = 503
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.Chat(
            chat.ChatRequest(credential="main", model="gpt-4o", messages=[user("Hi")]),
            metadata=metadata(token, "u-fail"),
        )
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    fake.force_status = None
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.Chat(
            chat.ChatRequest(credential="nope", model="gpt-4o", messages=[user("Hi")]),
            metadata=metadata(token, "u-nocred"),
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_every_call_leaves_a_row_with_its_tokens_status_provider_and_model(
    hub: HubUnderTest, fake: FakeOpenAI
) -> None:
    credential = await hub.hub.store.get_credential_by_name("acme", "main")
    assert credential is not None
    before = datetime.now(UTC)
    await make_calls(hub, fake)
    rows = await hub_rows(hub, 6)
    assert set(rows) == {"u-chat", "u-stream", "u-embed", "u-rest", "u-fail", "u-nocred"}

    def summary(row: UsageRow) -> tuple[Any, ...]:
        return (
            row.operation,
            row.provider,
            row.model,
            row.status,
            row.input_tokens,
            row.output_tokens,
            row.cached_tokens,
        )

    assert summary(rows["u-chat"]) == ("chat", "openai", "gpt-4o-mini", "OK", 20, 3, 8)
    assert summary(rows["u-stream"]) == ("stream_chat", "openai", "gpt-4o", "OK", 11, 4, 0)
    assert summary(rows["u-embed"]) == ("embed", "openai", "text-embedding-3-small", "OK", 3, 0, 0)
    assert summary(rows["u-rest"]) == ("chat", "openai", "gpt-4o", "OK", 5, 2, 0)
    assert summary(rows["u-fail"]) == ("chat", "openai", "gpt-4o", "UNAVAILABLE", 0, 0, 0)
    assert rows["u-fail"].reason == "PROVIDER_UNAVAILABLE"
    # Failed before any credential was found: no provider, no credential.
    nocred = rows["u-nocred"]
    assert (nocred.status, nocred.reason, nocred.provider, nocred.credential_id) == (
        "NOT_FOUND",
        "CREDENTIAL_NOT_FOUND",
        "",
        "",
    )
    for request_id in ("u-chat", "u-stream", "u-embed", "u-rest", "u-fail"):
        row = rows[request_id]
        assert (row.tenant_id, row.credential_id, row.credential_name) == ("acme", credential.id, "main")
        assert (row.route, row.target) == ("", "")
        assert row.latency_ms >= row.upstream_ms > 0, request_id
        assert before - timedelta(seconds=1) <= row.at <= datetime.now(UTC)
    # The other tenant has none.
    assert await rows_of(hub.hub.store, "globex") == []


async def test_a_routed_call_records_the_route_and_the_target_that_answered(
    tmp_path: Path, backend_url: str, fake: FakeOpenAI
) -> None:
    policy = (
        "[defaults]\nmax_attempts = 1\n"
        "[tenants.acme.routes.smart]\n"
        'targets = [{credential = "down", model = "gpt-4o"}, {credential = "main", model = "gpt-4o-mini"}]\n'
    )
    async with (
        FakeOpenAI(valid_keys={DOWN_KEY}, force_status=503) as down,
        running_hub(settings_for(tmp_path, database_url=backend_url, policy=policy)) as hut,
    ):
        await create_credential(hut, "main", fake.base_url)
        await create_credential(hut, "down", down.base_url, key=DOWN_KEY)
        await chat_pb2_grpc.ChatServiceStub(hut.channel).Chat(
            chat.ChatRequest(model="smart", messages=[user("Hi")]),
            metadata=metadata(hut.tokens.invoke_only, "u-route"),
        )
        row = (await hub_rows(hut, 1))["u-route"]
        assert (row.route, row.target, row.credential_name, row.model, row.status) == (
            "smart",
            "main/gpt-4o-mini",
            "main",
            "gpt-4o-mini",
            "OK",
        )
        assert len(down.requests) == 1
        assert len(fake.requests) == 1


async def test_a_caller_string_with_nul_does_not_cost_the_batch_its_other_rows(
    hub: HubUnderTest, fake: FakeOpenAI
) -> None:
    recorder = hub.hub.usage
    assert recorder is not None
    stub = chat_pb2_grpc.ChatServiceStub(hub.channel)
    calls = [
        stub.Chat(
            chat.ChatRequest(credential="main", model=model, messages=[user("Hi")]),
            metadata=metadata(hub.tokens.invoke_only, f"u-{n}"),
        )
        for n, model in enumerate(["gpt-4o", "gpt\x00-4o", "gpt-4o-mini"])
    ]
    await asyncio.gather(*calls)
    rows = await hub_rows(hub, 3)
    assert {rows[f"u-{n}"].model for n in range(3)} == {"gpt-4o", "gpt-4o-mini"}
    assert recorder.rejected == 0


async def test_a_cancelled_stream_is_recorded_as_cancelled(hub: HubUnderTest, fake: FakeOpenAI) -> None:
    fake.script(ChatReply(text="never ending", hold_open=True))
    call = chat_pb2_grpc.ChatServiceStub(hub.channel).StreamChat(
        chat.ChatRequest(credential="main", model="gpt-4o", messages=[user("Hi")]),
        metadata=metadata(hub.tokens.invoke_only, "u-cancel"),
    )
    await call.read()
    call.cancel()
    await fake.wait_for_disconnect(timeout=2.0)
    row = (await hub_rows(hub, 1))["u-cancel"]
    assert (row.operation, row.status) == ("stream_chat", "CANCELLED")


async def test_a_streams_upstream_time_leaves_out_what_the_hub_did_before_calling(
    hub: HubUnderTest, fake: FakeOpenAI
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(hub.channel)
    request = chat.ChatRequest(credential="main", model="gpt-4o", messages=[user("Hi")])
    async for _ in stub.StreamChat(request, metadata=metadata(hub.tokens.invoke_only, "u-stream-ok")):
        pass
    missing = chat.ChatRequest(credential="nope", model="gpt-4o", messages=[user("Hi")])
    with pytest.raises(grpc.aio.AioRpcError):
        async for _ in stub.StreamChat(missing, metadata=metadata(hub.tokens.invoke_only, "u-stream-404")):
            pass
    rows = await hub_rows(hub, 2)
    ok, refused = rows["u-stream-ok"], rows["u-stream-404"]
    assert 0 < ok.upstream_ms <= ok.latency_ms
    # Failed at the credential lookup: the provider was never called, no upstream time.
    assert (refused.status, refused.upstream_ms) == ("NOT_FOUND", 0.0)
    assert refused.latency_ms > 0


# --- UsageService ---------------------------------------------------------------------------------


def usage_stub(hut: HubUnderTest) -> usage_pb2_grpc.UsageServiceStub:
    return usage_pb2_grpc.UsageServiceStub(hut.channel)


def by_key(response: upb.GetUsageResponse, field: str) -> dict[str, upb.UsageGroup]:
    return {getattr(group, field): group for group in response.groups}


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            info = error_details_pb2.ErrorInfo()
            status_pb2.Status.FromString(value).details[0].Unpack(info)
            return info
    raise AssertionError("no status details")


async def test_get_usage_answers_totals_over_grpc_and_rest(hub: HubUnderTest, fake: FakeOpenAI) -> None:
    await make_calls(hub, fake)
    await hub_rows(hub, 6)
    stub, admin = usage_stub(hub), hub.auth(hub.tokens.admin)

    (total,) = (await stub.GetUsage(upb.GetUsageRequest(), metadata=admin)).groups
    assert (total.requests, total.errors) == (6, 2)
    assert (total.input_tokens, total.output_tokens, total.cached_tokens) == (39, 9, 8)
    assert total.total_tokens == 48
    assert total.average_latency_ms >= total.average_upstream_ms > 0

    by_model = by_key(
        await stub.GetUsage(upb.GetUsageRequest(group_by=[upb.USAGE_GROUP_BY_MODEL]), metadata=admin), "model"
    )
    assert {m: g.requests for m, g in by_model.items()} == {
        "gpt-4o": 4,
        "gpt-4o-mini": 1,
        "text-embedding-3-small": 1,
    }
    assert (by_model["gpt-4o"].input_tokens, by_model["gpt-4o"].errors) == (16, 2)
    assert by_model["gpt-4o"].credential_id == ""
    assert by_model["gpt-4o"].day == ""

    by_credential = await stub.GetUsage(
        upb.GetUsageRequest(group_by=[upb.USAGE_GROUP_BY_CREDENTIAL]), metadata=admin
    )
    assert [(g.credential_name, g.requests) for g in by_credential.groups] == [("", 1), ("main", 5)]

    today = datetime.now(UTC).date().isoformat()
    by_op_day = await stub.GetUsage(
        upb.GetUsageRequest(group_by=[upb.USAGE_GROUP_BY_OPERATION, upb.USAGE_GROUP_BY_DAY]), metadata=admin
    )
    assert [(g.operation, g.day, g.requests) for g in by_op_day.groups] == [
        ("chat", today, 4),
        ("embed", today, 1),
        ("stream_chat", today, 1),
    ]

    filtered = await stub.GetUsage(
        upb.GetUsageRequest(credential="main", model="gpt-4o", provider="openai"), metadata=admin
    )
    assert filtered.groups[0].requests == 3
    # The range answered is given back: by default the last 30 days up to now.
    span = filtered.end_time.ToDatetime() - filtered.start_time.ToDatetime()
    assert span == timedelta(days=30)

    # REST: the same totals (GET /v1/usage, fields from the query string).
    start = int((datetime.now(UTC) - timedelta(days=1)).timestamp())
    async with hub.http.get(
        hub.http_base + "/v1/usage",
        params=[
            ("group_by", "USAGE_GROUP_BY_MODEL"),
            ("provider", "openai"),
            ("start_time.seconds", str(start)),
        ],
        headers=hub.headers(hub.tokens.admin),
    ) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    rest = {g["model"]: g for g in body["groups"]}
    assert {m: int(g["requests"]) for m, g in rest.items()} == {
        "gpt-4o": 3,  # the call with an unknown credential has no provider
        "gpt-4o-mini": 1,
        "text-embedding-3-small": 1,
    }
    assert int(rest["gpt-4o-mini"]["cached_tokens"]) == 8
    assert body["start_time"].startswith(datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%S"))


async def test_each_tenant_sees_only_its_own_usage(hub: HubUnderTest, fake: FakeOpenAI) -> None:
    await make_calls(hub, fake)
    await hub_rows(hub, 6)
    other = hub.auth(hub.tokens.other_tenant)
    (total,) = (await usage_stub(hub).GetUsage(upb.GetUsageRequest(), metadata=other)).groups
    assert (total.requests, total.input_tokens) == (0, 0)
    grouped = await usage_stub(hub).GetUsage(
        upb.GetUsageRequest(group_by=[upb.USAGE_GROUP_BY_CREDENTIAL]), metadata=other
    )
    assert list(grouped.groups) == []
    # Naming the other tenant's credential by name or id finds nothing either.
    credential = await hub.hub.store.get_credential_by_name("acme", "main")
    assert credential is not None
    for ref in ("main", credential.id):
        (named,) = (
            await usage_stub(hub).GetUsage(upb.GetUsageRequest(credential=ref), metadata=other)
        ).groups
        assert named.requests == 0
    async with hub.http.get(
        hub.http_base + "/v1/usage", headers=hub.headers(hub.tokens.other_tenant)
    ) as response:
        assert response.status == 200
        assert int((await response.json())["groups"][0]["requests"]) == 0


async def test_usage_needs_the_admin_scope_as_the_proto_declares(hub: HubUnderTest) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await usage_stub(hub).GetUsage(upb.GetUsageRequest(), metadata=hub.auth(hub.tokens.invoke_only))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(denied.value).reason == "MISSING_SCOPE"
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await usage_stub(hub).GetUsage(upb.GetUsageRequest())
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with hub.http.get(
        hub.http_base + "/v1/usage", headers=hub.headers(hub.tokens.invoke_only)
    ) as response:
        assert response.status == 403
        assert (await response.json())["error"]["details"][0]["reason"] == "MISSING_SCOPE"
    await usage_stub(hub).GetUsage(upb.GetUsageRequest(), metadata=hub.auth(hub.tokens.admin))


def ts(moment: datetime) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(moment)
    return value


async def test_bad_ranges_and_groups_are_invalid_argument_naming_the_field(hub: HubUnderTest) -> None:
    now = datetime.now(UTC)
    cases = [
        (upb.GetUsageRequest(start_time=ts(now), end_time=ts(now)), "end_time"),
        (upb.GetUsageRequest(start_time=ts(now), end_time=ts(now - timedelta(hours=1))), "end_time"),
        (upb.GetUsageRequest(start_time=ts(now - timedelta(days=367)), end_time=ts(now)), "start_time"),
        (upb.GetUsageRequest(start_time=ts(now + timedelta(days=1))), "start_time"),  # after "now"
        (upb.GetUsageRequest(start_time=timestamp_pb2.Timestamp(seconds=0, nanos=-1)), "start_time"),
        (upb.GetUsageRequest(end_time=timestamp_pb2.Timestamp(seconds=253402300800)), "end_time"),
        (upb.GetUsageRequest(group_by=[upb.USAGE_GROUP_BY_UNSPECIFIED]), "group_by"),
        (upb.GetUsageRequest(group_by=[upb.USAGE_GROUP_BY_MODEL, 99]), "group_by"),  # type: ignore[list-item]
    ]
    for request, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await usage_stub(hub).GetUsage(request, metadata=hub.auth(hub.tokens.admin))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (request, caught.value.details())
        info = error_info(caught.value)
        assert (info.reason, info.metadata["field"]) == ("INVALID_FIELD", field), request
    # Exactly 366 days is allowed; so is a range at the very start of the calendar.
    ok = [
        upb.GetUsageRequest(start_time=ts(now - timedelta(days=366)), end_time=ts(now)),
        upb.GetUsageRequest(end_time=ts(datetime(1, 1, 2, tzinfo=UTC))),
    ]
    for request in ok:
        (group,) = (await usage_stub(hub).GetUsage(request, metadata=hub.auth(hub.tokens.admin))).groups
        assert group.requests == 0
    async with hub.http.get(
        hub.http_base + "/v1/usage",
        params={"start_time.seconds": str(int(now.timestamp())), "end_time.seconds": "0"},
        headers=hub.headers(hub.tokens.admin),
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"]["details"][0]["metadata"]["field"] == "end_time"
    async with hub.http.get(
        hub.http_base + "/v1/usage", params={"group_by": "BY_NOTHING"}, headers=hub.headers(hub.tokens.admin)
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"]["details"][0]["metadata"]["field"] == "group_by"


async def test_rest_takes_rfc3339_timestamps_in_the_query_string(hub: HubUnderTest) -> None:
    async with hub.http.get(
        hub.http_base + "/v1/usage",
        params={"start_time": "2025-01-01T00:00:00Z", "end_time": "2025-02-01T01:30:00+01:00"},
        headers=hub.headers(hub.tokens.admin),
    ) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
        assert (body["start_time"], body["end_time"]) == ("2025-01-01T00:00:00Z", "2025-02-01T00:30:00Z")
    async with hub.http.get(
        hub.http_base + "/v1/usage",
        params={"start_time": "yesterday"},
        headers=hub.headers(hub.tokens.admin),
    ) as response:
        assert response.status == 400
        error = (await response.json())["error"]
        assert error["details"][0]["metadata"]["field"] == "start_time"
        assert "RFC 3339" in error["message"]


async def test_days_group_calls_by_their_utc_day(hub: HubUnderTest) -> None:
    # Rows as the recorder writes them, on three UTC days; the service sums them per day.
    recorder = hub.hub.usage
    assert recorder is not None
    moments = [
        datetime(2025, 4, 1, 23, 59, 59, tzinfo=UTC),
        datetime(2025, 4, 2, 0, 0, 0, tzinfo=UTC),
        datetime(2025, 4, 2, 13, 0, 0, tzinfo=UTC),
        datetime(2025, 4, 3, 0, 0, 1, tzinfo=UTC),
    ]
    for i, moment in enumerate(moments):
        recorder.observe(record(i, started_at=moment))
    await recorder.flush()
    response = await usage_stub(hub).GetUsage(
        upb.GetUsageRequest(
            start_time=ts(datetime(2025, 4, 2, tzinfo=UTC)),
            end_time=ts(datetime(2025, 4, 4, tzinfo=UTC)),
            group_by=[upb.USAGE_GROUP_BY_DAY],
        ),
        metadata=hub.auth(hub.tokens.admin),
    )
    assert [(g.day, g.requests) for g in response.groups] == [
        (date(2025, 4, 2).isoformat(), 2),
        (date(2025, 4, 3).isoformat(), 1),
    ]
