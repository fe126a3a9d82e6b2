"""Key lifecycle: init, rotate, rewrap, retire, status (Vault transit's model).

- rotate adds a key and makes it primary; new writes use it at once (servers
  re-read the keyring file within a second).
- rewrap re-seals, batch by batch, every row not under the primary key, online:
  each row is replaced by compare-and-swap on its version, so a concurrent
  update wins and is simply not rewrapped (it is already under the primary).
  The work list is "rows not under the primary", so a crashed run resumes by
  running again. The associated data is carried through: the row's tenant,
  id and provider bind the new ciphertext exactly as they bound the old.
- retire refuses while any row is sealed under the key; afterwards the key's
  material is gone from the keyring file and it can open nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from integration_hub.audit import AuditLog
from integration_hub.cache import RowCache, credential_keys
from integration_hub.store.base import CredentialRow, StaleWrite, Store
from integration_hub.vault import (
    ENCRYPTION_WARNING_THRESHOLD,
    NONCE_BOUND,
    Keyring,
    KeyringError,
    OpenError,
    SealContext,
    format_key_id,
    key_id_of,
    open_sealed,
    seal,
)

log = logging.getLogger("integration_hub.keys")


def init_keyring(path: str) -> Keyring:
    if Path(path).exists():
        raise KeyringError(f"{path} already exists; refusing to overwrite a keyring")
    keyring = Keyring.generate()
    keyring.save(path)
    return keyring


def rotate_keyring(path: str, audit: AuditLog | None = None) -> Keyring:
    rotated = Keyring.load(path).rotate()
    rotated.save(path)  # atomic replace: on failure the old file is untouched
    if audit is not None:
        audit.record("key.rotate", "ok", actor="cli", detail={"primary": format_key_id(rotated.primary_id)})
    return rotated


@dataclass
class RewrapReport:
    primary: int
    rewrapped: int = 0
    changed_concurrently: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # credential id -> cause

    @property
    def ok(self) -> bool:
        return not self.failed


async def rewrap(
    keyring_path: str, store: Store, cache: RowCache, audit: AuditLog, *, batch_size: int = 100
) -> RewrapReport:
    keyring = Keyring.load(keyring_path)
    report = RewrapReport(primary=keyring.primary_id)
    after: str | None = None
    while True:
        batch = await store.credentials_not_under_key(keyring.primary_id, after_id=after, limit=batch_size)
        if not batch:
            break
        for row in batch:
            await _rewrap_row(keyring, row, store, cache, audit, report)
        after = batch[-1].id
        log.info("rewrap batch done", extra={"rewrapped": report.rewrapped, "failed": len(report.failed)})
    return report


async def _rewrap_row(
    keyring: Keyring, row: CredentialRow, store: Store, cache: RowCache, audit: AuditLog, report: RewrapReport
) -> None:
    context = SealContext(row.tenant_id, row.id, row.provider)
    try:
        plaintext = open_sealed(keyring, row.ciphertext, context)
    except OpenError as exc:
        report.failed[row.id] = exc.cause.name
        audit.record(
            "credential.rewrap",
            "error",
            tenant_id=row.tenant_id,
            credential_id=row.id,
            actor="cli",
            detail={"cause": exc.cause.name},
        )
        return
    await store.add_encryptions(keyring.primary_id, 1)
    blob = seal(keyring, plaintext, context)
    del plaintext
    updated = CredentialRow(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        provider=row.provider,
        options=row.options,
        ciphertext=blob,
        key_id=key_id_of(blob),
        hint=row.hint,
        secret_fields=row.secret_fields,
        created_at=row.created_at,
        updated_at=datetime.now(UTC),
        version=row.version,
    )
    try:
        await store.update_credential(updated, expected_version=row.version)
    except StaleWrite:
        report.changed_concurrently += 1
        return
    await cache.invalidate(credential_keys(row))
    report.rewrapped += 1
    audit.record(
        "credential.rewrap",
        "ok",
        tenant_id=row.tenant_id,
        credential_id=row.id,
        actor="cli",
        detail={"from_key": format_key_id(row.key_id), "to_key": format_key_id(keyring.primary_id)},
    )


async def retire_key(keyring_path: str, key_id: int, store: Store, audit: AuditLog) -> Keyring:
    keyring = Keyring.load(keyring_path)
    in_use = (await store.count_credentials_by_key()).get(key_id, 0)
    if in_use:
        raise KeyringError(
            f"{in_use} credential(s) are still sealed under {format_key_id(key_id)}; "
            "run `integration-hub keys rewrap` first"
        )
    retired = keyring.retire(key_id)
    retired.save(keyring_path)
    audit.record("key.retire", "ok", actor="cli", detail={"key": format_key_id(key_id)})
    return retired


@dataclass
class KeyStatus:
    id: str
    state: str
    created_at: str
    retired_at: str
    rows: int
    encryptions: int
    warning: str


async def key_status(keyring_path: str, store: Store) -> list[KeyStatus]:
    keyring = Keyring.load(keyring_path)
    rows = await store.count_credentials_by_key()
    counts = await store.encryption_counts()
    statuses = []
    for info in keyring.keys():  # noqa: SIM118 - Keyring.keys() lists key versions
        used = counts.get(info.id, 0)
        warning = ""
        if used >= ENCRYPTION_WARNING_THRESHOLD:
            warning = (
                f"{used} encryptions: {used / NONCE_BOUND:.0%} of the 2^32 random-nonce bound; rotate now"
            )
        statuses.append(
            KeyStatus(
                id=format_key_id(info.id),
                state=info.state,
                created_at=info.created_at.isoformat(),
                retired_at=info.retired_at.isoformat() if info.retired_at else "",
                rows=rows.get(info.id, 0),
                encryptions=used,
                warning=warning,
            )
        )
    unknown = set(rows) - {i.id for i in keyring.keys()}  # noqa: SIM118
    for key_id in sorted(unknown):
        statuses.append(
            KeyStatus(
                format_key_id(key_id),
                "missing from keyring",
                "",
                "",
                rows[key_id],
                counts.get(key_id, 0),
                "rows sealed under a key this keyring does not have",
            )
        )
    return statuses
