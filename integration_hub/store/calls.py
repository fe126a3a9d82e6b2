"""What the store keeps of telephony: calls and their events (rows, queries, protocol).

Both backends implement CallStore (postgres_calls.py, sqlite_calls.py) on their own
connection, with the SQL they share in _calls_sql.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class CallRow:
    id: str
    tenant_id: str
    credential_id: str
    provider: str
    to_number: str
    from_number: str
    status: str  # a callers.types.CallStatus value
    status_rank: int
    token_hash: str  # SHA-256 (hex) of the call's URL token; the token itself is never stored
    created_at: datetime
    updated_at: datetime
    credential_name: str = ""
    provider_call_id: str = ""
    provider_status: str = ""
    # What the call does once answered (kind, and its text / parameters / instructions):
    # the answer endpoint needs it when the provider asks for instructions.
    action: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    campaign_id: str | None = None
    campaign_row: int | None = None
    attempt: int = 1
    duration_ms: int | None = None
    answered_by: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class CallEventRow:
    call_id: str
    tenant_id: str
    event_id: str  # the provider's identity of the event: unique per call
    received_at: datetime
    status: str = ""  # "" for an event that is no change of state
    status_rank: int | None = None
    provider_status: str = ""
    occurred_at: datetime | None = None
    duration_ms: int | None = None
    answered_by: str = ""
    error: str = ""
    raw: Mapping[str, str] = field(default_factory=dict)
    campaign_id: str | None = None
    # Set by the store: the event's place in the tenant's order, and whether it moved
    # the call's state (False when it arrived after a later state).
    sequence: int = 0
    applied: bool = False


@dataclass(frozen=True, slots=True)
class CallQuery:
    """One tenant's calls, newest first, in pages (keyset: after (created_at, id))."""

    tenant_id: str
    limit: int
    status: str | None = None
    campaign_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    # The last row of the previous page.
    after: tuple[datetime, str] | None = None


@dataclass(frozen=True, slots=True)
class CallPlaced:
    """What the provider answered when it accepted a call."""

    provider_call_id: str
    provider_status: str
    status: str | None  # set only when it moves the call forward (by rank)
    status_rank: int | None
    at: datetime


class CallStore(Protocol):
    async def insert_call(self, row: CallRow) -> CallRow:
        """Store a new call; with an idempotency key already used by the tenant, store
        nothing and answer the call that has it."""
        ...

    async def get_call(self, tenant_id: str, call_id: str) -> CallRow | None: ...

    async def get_call_by_id(self, call_id: str) -> CallRow | None:
        """For the provider's webhooks, which name a call but no tenant: the caller must
        check the call's token before trusting anything else."""
        ...

    async def mark_call_placed(self, call_id: str, placed: CallPlaced) -> CallRow: ...

    async def mark_call_failed(self, call_id: str, error: str, at: datetime) -> CallRow:
        """The provider refused the call: failed, with the reason (no secret in it)."""
        ...

    async def adopt_provider_call_id(self, call_id: str, provider_call_id: str) -> bool:
        """Set the call's provider id if it has none yet and no other call of the provider
        has it (a call whose place answer was lost learns it from its first event, or from
        the provider's list); False when it was not set."""
        ...

    async def call_by_provider_id(self, provider: str, provider_call_id: str) -> CallRow | None:
        """The call that has this provider's call id, of any tenant (for matching a
        provider's call to the hub's: the caller must not show it to another tenant)."""
        ...

    async def fail_unplaced_call(self, call_id: str, error: str, at: datetime) -> bool:
        """Mark the call failed with `error` if it still has no provider id, no event and
        has not ended (the provider said it never had it); False when it moved on."""
        ...

    async def claim_silent_calls(
        self, *, now: datetime, silent_before: datetime, lease_until: datetime, limit: int
    ) -> list[CallRow]:
        """Up to `limit` calls to reconcile, leased to the caller until `lease_until`: not
        ended, no news since `silent_before` (with or without a provider id), and no other
        lease running (every worker may ask at once; each call goes to one of them)."""
        ...

    async def list_calls(self, query: CallQuery) -> list[CallRow]: ...

    async def add_call_event(self, event: CallEventRow) -> tuple[CallEventRow | None, CallRow]:
        """Record an event and apply it to its call if it moves the call forward.

        Answers (the stored event, the call after it), or (None, the call) when the
        call already has an event with this event_id (a duplicate or a replay)."""
        ...

    async def list_call_events(
        self, tenant_id: str, after_sequence: int, *, campaign_id: str | None = None, limit: int = 500
    ) -> list[tuple[CallEventRow, CallRow]]:
        """The tenant's events after `after_sequence`, in order, each with its call now."""
        ...

    async def last_call_event_sequence(self, tenant_id: str) -> int: ...
