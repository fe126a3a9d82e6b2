"""Row factories for store tests: valid rows with overridable fields."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from integration_hub.store import AuditEvent, CredentialRow, TokenRow

NOW = datetime(2025, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def make_credential(**overrides: Any) -> CredentialRow:
    row = CredentialRow(
        id=new_id("cred"),
        tenant_id="tenant-a",
        name="openai-prod",
        provider="openai",
        options={"base_url": "https://api.openai.com/v1", "organization": "org-1"},
        ciphertext=b"\x01\x00\x00\x00\x07sealed\x00bytes\xff",
        key_id=1,
        hint="sk-...a1b2",
        secret_fields=("api_key",),
        created_at=NOW,
        updated_at=NOW,
    )
    return replace(row, **overrides)


def make_token(**overrides: Any) -> TokenRow:
    row = TokenRow(
        id=new_id("tok"),
        tenant_id="tenant-a",
        name="ci",
        token_hash=uuid.uuid4().hex + uuid.uuid4().hex,
        scopes=("credentials:read", "credentials:write"),
        created_at=NOW,
    )
    return replace(row, **overrides)


def make_audit_event(**overrides: Any) -> AuditEvent:
    event = AuditEvent(
        at=NOW,
        action="credential.decrypt",
        outcome="ok",
        tenant_id="tenant-a",
        credential_id="cred_1",
        actor="tok_1",
        request_id="req-1",
        detail={"provider": "openai"},
    )
    return replace(event, **overrides)
