"""Usage accounting: every provider call becomes a row in the store, and UsageService
answers totals over them.

UsageRecorder is a CallObserver. Its observe() runs in the request's path, so it only
appends the CallRecord to a bounded in-memory queue; one background task turns the
queue into rows and writes them in batches (every FLUSH_INTERVAL, or as soon as
BATCH_SIZE records wait), one multi-row statement per batch. Usage recording never
fails or slows a call:

- store down (or a write hanging past WRITE_TIMEOUT): the records stay queued and
  the writer retries with backoff;
- queue full (a long outage): the oldest records are dropped, counted in `dropped`
  and said in a log line;
- a batch the store refuses for another reason (a bug, not an outage) would block
  every later batch if retried. It is split in halves, and the halves again, so
  that only the records the store refuses are dropped (counted in `rejected` and
  logged), not the other tenants' records that shared their batch; the splitting
  is bounded (MAX_STATEMENTS_PER_BATCH), so a store that refuses everything costs
  a few statements per batch, not one per record;
- shutdown: what is queued is written within the deadline, and the number of
  records that could not be written, if any, is logged.

Each loss is also counted in the metric hub_usage_records_dropped{reason}. So nothing
is lost beyond what is queued when the process dies, and any loss is said. (A batch
cut off mid-write is queued again and rewritten: if the database had committed it,
those rows are stored twice. Loss is never hidden; a duplicate is possible.)

What a record says is sanitised before it is written (usage_row): text without NUL
characters or unpaired surrogates (Postgres and the UTF-8 codecs refuse them) and at
most MAX_TEXT characters, counts within [0, MAX_COUNT], times finite and >= 0. So a
caller's odd model name or a provider's odd count cannot make a batch unwritable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2

from integration_hub import metrics
from integration_hub.call_record import CallRecord
from integration_hub.errors import invalid_field
from integration_hub.rpc import CallContext
from integration_hub.store.base import (
    Store,
    StoreUnavailable,
    UsageDimension,
    UsageQuery,
    UsageRow,
    UsageTotals,
)
from integration_hub.v1 import usage_pb2 as pb

log = logging.getLogger("integration_hub.usage")

FLUSH_INTERVAL = 0.2  # seconds a record may wait for its batch to fill
BATCH_SIZE = 500
MAX_QUEUE = 100_000  # about 100 MB of CallRecords at most, many minutes of a busy hub
MIN_BACKOFF, MAX_BACKOFF = 0.2, 5.0
# A write that takes longer is treated as an outage (cancelled, its batch queued again):
# a database that accepts the connection but never answers must not stall the writer.
WRITE_TIMEOUT = 30.0
# How many statements one refused batch may cost while it is split to find the records
# the store refuses (one bad record in 500 takes about 18); past it the rest is dropped.
MAX_STATEMENTS_PER_BATCH = 64

# Bounds of what a row says (see usage_row). A count above MAX_COUNT is no provider's real
# answer; the bound keeps the sums of many rows far inside 64 bits on every backend.
MAX_TEXT = 512
MAX_COUNT = 2**32 - 1
_INT64_MAX = 2**63 - 1

DEFAULT_RANGE = timedelta(days=30)
MAX_RANGE = timedelta(days=366)
# A response larger than this is a query that asks for too fine a grouping: say so
# rather than build a message that clients (4 MB default limit) cannot receive.
MAX_GROUPS = 10_000


def usage_row(record: CallRecord) -> UsageRow:
    """The stored form of a call, sanitised so that every backend accepts it: text without
    NUL or unpaired surrogates and at most MAX_TEXT characters, counts in [0, MAX_COUNT]
    (the tables refuse negatives), times finite and >= 0. So one odd caller string or
    provider answer cannot make a whole batch unwritable."""
    return UsageRow(
        at=record.started_at,
        tenant_id=_text(record.tenant_id),
        operation=_text(record.operation),
        model=_text(record.model),
        status=_text(record.status),
        credential_id=_text(record.credential_id),
        credential_name=_text(record.credential_name),
        provider=_text(record.provider),
        route=_text(record.route),
        target=_text(record.target),
        input_tokens=_count(record.input_tokens),
        output_tokens=_count(record.output_tokens),
        cached_tokens=_count(record.cached_tokens),
        latency_ms=_milliseconds(record.latency_seconds),
        upstream_ms=_milliseconds(record.upstream_seconds),
        reason=_text(record.reason),
        request_id=_text(record.request_id),
        record_id=record.record_id,
        audio_seconds=_seconds(record.audio_seconds),
        characters=_count(record.characters),
    )


def _text(value: str) -> str:
    if len(value) > MAX_TEXT:
        value = value[:MAX_TEXT]
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        # Unpaired surrogates (possible in a Python str, never in UTF-8) become "?".
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _count(value: int) -> int:
    return min(max(0, value), MAX_COUNT)


def _milliseconds(seconds: float) -> float:
    milliseconds = seconds * 1000
    return milliseconds if math.isfinite(milliseconds) and milliseconds > 0 else 0.0


def _seconds(value: float) -> float:
    return value if math.isfinite(value) and value > 0 else 0.0


class UsageRecorder:
    """Queues CallRecords on the hot path; writes them to the store in batches off it.

    Counters (also exported as metrics): `pending` (queued now), `written`, `dropped`
    (queue overflow), `rejected` (refused by the store for a reason other than an
    outage) and `lost_at_shutdown` (still queued when close() ran out of time).
    """

    def __init__(
        self,
        store: Store,
        *,
        max_queue: int = MAX_QUEUE,
        batch_size: int = BATCH_SIZE,
        flush_interval: float = FLUSH_INTERVAL,
        write_timeout: float = WRITE_TIMEOUT,
    ) -> None:
        if max_queue < 1 or batch_size < 1:
            raise ValueError("max_queue and batch_size must be at least 1")
        self._store = store
        self._queue: deque[CallRecord] = deque()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._write_timeout = write_timeout
        self._arrived = asyncio.Event()  # the queue is not empty
        self._batch_full = asyncio.Event()  # a whole batch is waiting: write now
        self._stop_requested = asyncio.Event()
        # One writer at a time: the task and an explicit flush() must not both take a batch.
        self._flushing = asyncio.Lock()
        self._writer: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self.rejected = 0
        self.lost_at_shutdown = 0
        self._dropped_reported = 0

    # --- the hot path ----------------------------------------------------------------

    def observe(self, record: CallRecord) -> None:
        """Queue the record: constant time, no I/O, never raises."""
        queue = self._queue
        if len(queue) >= self._max_queue:
            queue.popleft()  # the oldest goes; the writer logs how many
            self.dropped += 1
        queue.append(record)
        self._arrived.set()
        if len(queue) >= self._batch_size:
            self._batch_full.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_forever(), name="usage-writer")
        return self._writer

    async def flush(self) -> None:
        """Write everything queued now. Raises StoreUnavailable (the records stay queued)."""
        async with self._flushing:
            try:
                while self._queue:
                    batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
                    await self._write(batch)
            finally:
                metrics.usage_records_pending(len(self._queue))

    async def close(self, timeout: float) -> None:
        """Write what is queued, retrying for at most `timeout` seconds; log what could not be."""
        self._stop_requested.set()
        self._arrived.set()
        self._batch_full.set()
        writer = self.start()  # a recorder never started still writes its queue here
        done, _ = await asyncio.wait({writer}, timeout=timeout)
        if not done:
            # A batch cut off mid-write goes back to the queue and is counted below as not
            # written, although the database may have committed it: loss is over-reported,
            # never hidden.
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        elif not writer.cancelled() and writer.exception() is not None:
            log.error("usage: the writer failed", exc_info=writer.exception())
        self._report_drops()
        if self._queue:
            lost = len(self._queue)
            self._queue.clear()
            self.lost_at_shutdown += lost
            metrics.usage_records_dropped("shutdown", lost)
            log.error(
                "usage: %d record(s) could not be written before shutdown (store unavailable); they are lost",
                lost,
            )
        metrics.usage_records_pending(0)

    # --- the writer ----------------------------------------------------------------------

    async def _write_forever(self) -> None:
        backoff = MIN_BACKOFF
        while True:
            if self._stop_requested.is_set() and not self._queue:
                return
            await self._next_batch_due()
            try:
                await self.flush()
                backoff = MIN_BACKOFF
            except StoreUnavailable as exc:
                log.warning(
                    "usage: store unavailable (%s); %d record(s) queued, retrying in %.1fs",
                    exc,
                    len(self._queue),
                    MIN_BACKOFF if self._stop_requested.is_set() else backoff,  # see _pause
                )
                await self._pause(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            finally:
                self._report_drops()

    async def _next_batch_due(self) -> None:
        """Wait for a record, then for a full batch or FLUSH_INTERVAL, whichever comes first."""
        if not self._queue:  # after a failed write the queue is not empty, and nothing new may come
            await self._arrived.wait()
        if len(self._queue) < self._batch_size and not self._stop_requested.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_interval):
                    await self._batch_full.wait()
        # Cleared before the flush takes the queue: a record appended later sets them again.
        self._arrived.clear()
        self._batch_full.clear()

    async def _pause(self, seconds: float) -> None:
        """Sleep before a retry; a shutdown cuts the sleep short (its deadline is what counts)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop_requested.wait()
        if self._stop_requested.is_set():
            await asyncio.sleep(MIN_BACKOFF)

    async def _write(self, batch: list[CallRecord]) -> None:
        """Write the batch; on an outage queue it again (in order) and raise StoreUnavailable.

        A batch the store refuses is split in halves until the refused records are alone
        (at most MAX_STATEMENTS_PER_BATCH statements): only those are dropped.
        """
        pieces: deque[list[CallRecord]] = deque([batch])
        statements = 0
        refused: list[CallRecord] = []
        first_refusal: Exception | None = None
        try:
            while pieces:
                piece = pieces[0]
                if statements >= MAX_STATEMENTS_PER_BATCH:
                    refused += [record for rest in pieces for record in rest]
                    break
                statements += 1
                try:
                    async with asyncio.timeout(self._write_timeout):
                        await self._store.insert_usage_records([usage_row(record) for record in piece])
                except TimeoutError:
                    self._requeue([record for rest in pieces for record in rest])
                    raise StoreUnavailable(
                        f"writing {len(piece)} usage record(s) took longer than {self._write_timeout:g}s"
                    ) from None
                except (StoreUnavailable, asyncio.CancelledError):
                    self._requeue([record for rest in pieces for record in rest])
                    raise
                except Exception as exc:
                    pieces.popleft()
                    first_refusal = first_refusal or exc
                    if len(piece) == 1:
                        refused += piece
                    else:
                        middle = len(piece) // 2
                        pieces.extendleft((piece[middle:], piece[:middle]))  # first half first
                    continue
                pieces.popleft()
                self.written += len(piece)
                metrics.usage_records_written(len(piece))
        finally:
            # Also when an outage interrupts the splitting: the records refused so far are not
            # queued again, so they are counted and said here.
            if refused:
                self._refused(refused, len(batch), first_refusal)

    def _refused(self, records: list[CallRecord], batch_size: int, error: Exception | None) -> None:
        self.rejected += len(records)
        metrics.usage_records_dropped("rejected", len(records))
        log.error(
            "usage: the store refused %d of a batch of %d record(s) (%s: %s); those are dropped",
            len(records),
            batch_size,
            type(error).__name__,
            error,
        )

    def _requeue(self, batch: list[CallRecord]) -> None:
        """Back in front, in order; the queue keeps its bound by dropping the oldest."""
        self._queue.extendleft(reversed(batch))
        excess = len(self._queue) - self._max_queue
        for _ in range(excess):
            self._queue.popleft()
        self.dropped += max(0, excess)

    def _report_drops(self) -> None:
        newly = self.dropped - self._dropped_reported
        if newly > 0:
            self._dropped_reported = self.dropped
            metrics.usage_records_dropped("queue_full", newly)
            log.error(
                "usage: queue full (%d records): dropped the %d oldest record(s); %d dropped in all",
                self._max_queue,
                newly,
                self.dropped,
            )


# --- UsageService ------------------------------------------------------------------------

_DIMENSIONS: dict[int, UsageDimension] = {
    pb.USAGE_GROUP_BY_CREDENTIAL: "credential",
    pb.USAGE_GROUP_BY_MODEL: "model",
    pb.USAGE_GROUP_BY_PROVIDER: "provider",
    pb.USAGE_GROUP_BY_OPERATION: "operation",
    pb.USAGE_GROUP_BY_DAY: "day",
}
_KNOWN_GROUPS = ", ".join(value.name for value in pb.UsageGroupBy.DESCRIPTOR.values if value.number)


def _moment(value: timestamp_pb2.Timestamp, field_name: str) -> datetime:
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise invalid_field(field_name, "not a valid timestamp") from None


def time_range(request: pb.GetUsageRequest, now: datetime) -> tuple[datetime, datetime]:
    """[start, end): end defaults to now, start to DEFAULT_RANGE before end.

    An error names the field the caller set (with only start_time set and in the future,
    the fault is start_time's, not that of the end_time it did not send).
    """
    given_start = _moment(request.start_time, "start_time") if request.HasField("start_time") else None
    given_end = _moment(request.end_time, "end_time") if request.HasField("end_time") else None
    end = given_end or now
    if given_start is not None:
        start = given_start
    else:
        try:
            start = end - DEFAULT_RANGE
        except OverflowError:  # an end_time within DEFAULT_RANGE of year 1
            start = datetime.min.replace(tzinfo=UTC)
    if end <= start:
        if given_end is None:
            raise invalid_field("start_time", "must be before end_time (default: now)")
        raise invalid_field("end_time", "must be after start_time")
    if end - start > MAX_RANGE:
        raise invalid_field("start_time", f"the range may span at most {MAX_RANGE.days} days")
    return start, end


def group_dimensions(values: Sequence[int]) -> tuple[UsageDimension, ...]:
    """The dimensions asked for, in order, each once."""
    dimensions: list[UsageDimension] = []
    for value in values:
        dimension = _DIMENSIONS.get(value)
        if dimension is None:
            raise invalid_field("group_by", f"unknown group {value}; use one of {_KNOWN_GROUPS}")
        if dimension not in dimensions:
            dimensions.append(dimension)
    return tuple(dimensions)


def group_to_proto(totals: UsageTotals) -> pb.UsageGroup:
    requests = totals.requests
    return pb.UsageGroup(
        credential_id=totals.credential_id,
        credential_name=totals.credential_name,
        model=totals.model,
        provider=totals.provider,
        operation=totals.operation,
        day=totals.day.isoformat() if totals.day is not None else "",
        requests=_int64(requests),
        errors=_int64(totals.errors),
        input_tokens=_int64(totals.input_tokens),
        output_tokens=_int64(totals.output_tokens),
        cached_tokens=_int64(totals.cached_tokens),
        total_tokens=_int64(totals.input_tokens + totals.output_tokens),
        average_latency_ms=totals.latency_ms_sum / requests if requests else 0.0,
        average_upstream_ms=totals.upstream_ms_sum / requests if requests else 0.0,
        audio_seconds=totals.audio_seconds,
        characters=_int64(totals.characters),
    )


def _int64(value: int) -> int:
    # Sums of stored rows (each count at most MAX_COUNT) fit; rows written before that bound
    # might not, and an int64 field raises on overflow.
    return min(value, _INT64_MAX)


class UsageApi:
    """The UsageService RPCs. The tenant is always the caller's (from the token)."""

    def __init__(self, store: Store, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._now = now

    async def GetUsage(self, request: pb.GetUsageRequest, call: CallContext) -> pb.GetUsageResponse:
        start, end = time_range(request, self._now())
        query = UsageQuery(
            tenant_id=call.principal.tenant_id,
            start=start,
            end=end,
            group_by=group_dimensions(request.group_by),
            credential=request.credential or None,
            model=request.model or None,
            provider=request.provider or None,
            limit=MAX_GROUPS + 1,
        )
        totals = await self._store.usage_totals(query)
        if len(totals) > MAX_GROUPS:
            raise invalid_field(
                "group_by", f"more than {MAX_GROUPS} groups; narrow the time range, group by less or filter"
            )
        response = pb.GetUsageResponse(groups=[group_to_proto(group) for group in totals])
        response.start_time.FromDatetime(start)
        response.end_time.FromDatetime(end)
        return response
