"""The one Store protocol every backend implements, and the rows it moves.

Rows carry ciphertext only: a credential's secret reaches the store sealed by the
vault and leaves it sealed. Nothing in this package ever sees plaintext.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol

from .calls import CallStore
from .campaigns import CampaignStore


class StoreError(Exception):
    """Base of the store's own errors (never carries row contents)."""


class DuplicateName(StoreError):
    """A credential with this name already exists for the tenant."""


class StaleWrite(StoreError):
    """A compare-and-swap update lost against a concurrent writer."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or refused the operation."""


@dataclass(frozen=True, slots=True)
class CredentialRow:
    id: str
    tenant_id: str
    name: str
    provider: str
    options: dict[str, str]
    # The sealed secret (vault format: version, key id, nonce, ciphertext, tag).
    ciphertext: bytes
    # Denormalised from the ciphertext header so that status/rewrap can query by key.
    key_id: int
    # Masked hint of the secret (e.g. "sk-...a1b2"); never the secret itself.
    hint: str
    # Names of the secret fields sealed inside the ciphertext (e.g. ["api_key"]).
    secret_fields: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    # Incremented on every write; updates are compare-and-swap on it.
    version: int = 1


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: str
    tenant_id: str
    name: str
    # sha256 hex of the whole token; the token itself is never stored.
    token_hash: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    at: datetime
    action: str  # e.g. "credential.decrypt", "credential.create", "key.rotate"
    outcome: str  # "ok" or "denied" / "error"
    tenant_id: str = ""
    credential_id: str = ""
    actor: str = ""  # token id, or "cli"
    request_id: str = ""
    detail: dict[str, str] = field(default_factory=dict)


# What usage totals can be grouped by; "day" is the UTC calendar day a call started.
UsageDimension = Literal["credential", "model", "provider", "operation", "day"]
USAGE_DIMENSIONS: tuple[UsageDimension, ...] = ("credential", "model", "provider", "operation", "day")


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One provider call, as usage accounting keeps it: no content, no secret."""

    at: datetime  # when the call started
    tenant_id: str
    operation: str  # "chat", "stream_chat", "embed", "rerank", "transcribe", "synthesize", ...
    model: str
    status: str  # "OK" or the gRPC status code name
    credential_id: str = ""
    credential_name: str = ""
    provider: str = ""
    route: str = ""
    target: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    latency_ms: float = 0.0
    upstream_ms: float = 0.0
    reason: str = ""
    request_id: str = ""
    # Unique per call when set: a row whose record_id is already stored is not written
    # again. "" (rows built by hand) is stored as NULL and never deduplicated.
    record_id: str = ""
    # Speech: seconds of audio transcribed or synthesized, characters synthesized.
    audio_seconds: float = 0.0
    characters: int = 0


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """One tenant's calls in [start, end), optionally filtered, summed per group."""

    tenant_id: str
    start: datetime
    end: datetime
    group_by: tuple[UsageDimension, ...] = ()
    credential: str | None = None  # matches the credential's id or its name at the time
    model: str | None = None
    provider: str | None = None
    # At most this many groups (the first ones in key order); None: all of them.
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """The sums of one group; only the keys of the grouped dimensions are set."""

    requests: int
    errors: int  # calls whose status is not "OK"
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    latency_ms_sum: float
    upstream_ms_sum: float
    audio_seconds: float = 0.0
    characters: int = 0
    credential_id: str = ""
    credential_name: str = ""
    model: str = ""
    provider: str = ""
    operation: str = ""
    day: date | None = None


class Store(CallStore, CampaignStore, Protocol):
    """Persistence for credentials, tokens, key usage counters, the audit trail, usage records
    and (CallStore, in calls.py) telephony's calls and events."""

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless a round trip to the database succeeds."""

    async def migrate(self) -> list[str]:
        """Apply pending migrations in order; return the names applied."""

    # --- credentials -------------------------------------------------------
    async def insert_credential(self, row: CredentialRow) -> None:
        """Raise DuplicateName when (tenant_id, name) exists."""

    async def get_credential(self, tenant_id: str, credential_id: str) -> CredentialRow | None: ...

    async def get_credential_by_name(self, tenant_id: str, name: str) -> CredentialRow | None: ...

    async def list_credentials(
        self, tenant_id: str, *, provider: str | None, after_name: str | None, limit: int
    ) -> list[CredentialRow]:
        """Ordered by name; `after_name` is the keyset cursor (exclusive)."""

    async def update_credential(self, row: CredentialRow, *, expected_version: int) -> CredentialRow:
        """Replace the row if its stored version equals expected_version.

        Returns the stored row (version = expected_version + 1). Raises StaleWrite when
        the version moved, DuplicateName on a rename collision.
        """

    async def delete_credential(self, tenant_id: str, credential_id: str) -> bool: ...

    async def credentials_not_under_key(
        self, key_id: int, *, after_id: str | None, limit: int
    ) -> list[CredentialRow]:
        """All tenants' rows whose key_id differs from key_id, ordered by id (rewrap batches)."""

    async def count_credentials_by_key(self) -> dict[int, int]: ...

    # --- key usage (random-nonce bound bookkeeping) --------------------------
    async def add_encryptions(self, key_id: int, count: int) -> None: ...

    async def encryption_counts(self) -> dict[int, int]: ...

    # --- tokens --------------------------------------------------------------
    async def insert_token(self, row: TokenRow) -> None: ...

    async def get_token_by_hash(self, token_hash: str) -> TokenRow | None: ...

    async def list_tokens(self, tenant_id: str | None) -> list[TokenRow]: ...

    async def revoke_token(self, token_id: str, at: datetime) -> TokenRow | None:
        """Mark revoked; return the row (None if unknown)."""

    # --- audit ---------------------------------------------------------------
    async def insert_audit_events(self, events: Sequence[AuditEvent]) -> None: ...

    async def list_audit_events(
        self, *, tenant_id: str | None = None, action: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        """Newest first."""

    # --- usage accounting ------------------------------------------------------------
    async def insert_usage_records(self, rows: Sequence[UsageRow]) -> None:
        """Write the batch in one statement (all or none)."""

    async def list_usage_records(self, tenant_id: str, *, limit: int = 100) -> list[UsageRow]:
        """The tenant's records, newest first."""

    async def usage_totals(self, query: UsageQuery) -> list[UsageTotals]:
        """Sums computed by the database, one entry per group, ordered by the group keys.

        Without group_by: exactly one entry, zeros when nothing matched.
        """
