"""The vault as the service uses it: seal a row's secret, open a row for one call.

Every open is audited (who, which credential, which call, why; never the value),
and every failure becomes the one generic CREDENTIAL_UNAVAILABLE error, so the
response is no oracle; the real cause goes to the audit trail only.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from integration_hub.audit import AuditLog
from integration_hub.errors import HubError
from integration_hub.store.base import CredentialRow, Store
from integration_hub.vault.keyring import Keyring
from integration_hub.vault.sealing import OpenError, OpenFailure, SealContext, key_id_of, open_sealed, seal
from integration_hub.vault.secret import Secret
from integration_hub.vault.source import KeyringSource

# Past this many distinct ciphertexts the set starts over (values are then registered again,
# which is harmless: registration is idempotent).
_MAX_REGISTERED = 10_000


def credential_unavailable() -> HubError:
    return HubError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "CREDENTIAL_UNAVAILABLE",
        "the stored credential could not be opened; an operator can find the cause in the audit log",
    )


class Vault:
    def __init__(self, keyrings: KeyringSource, store: Store, audit: AuditLog) -> None:
        self._keyrings = keyrings
        self._store = store
        self._audit = audit
        # Ciphertexts whose values this process has registered for log redaction: the same
        # ciphertext always opens to the same values, so opening it again need not
        # fingerprint them again. Holds ciphertexts only (they are in the row cache anyway).
        self._registered: set[bytes] = set()

    @property
    def keyring(self) -> Keyring:
        return self._keyrings.current()

    async def seal(
        self, secret: Mapping[str, str], *, tenant_id: str, credential_id: str, provider: str
    ) -> tuple[bytes, int]:
        """Seal under the primary key; returns (ciphertext, key id)."""
        keyring = self._keyrings.current()
        # Counted before sealing, so a crash can only over-count toward the nonce bound.
        await self._store.add_encryptions(keyring.primary_id, 1)
        blob = seal(keyring, Secret(secret).to_bytes(), SealContext(tenant_id, credential_id, provider))
        return blob, key_id_of(blob)

    def open(self, row: CredentialRow, *, actor: str, request_id: str, purpose: str) -> Secret:
        """The row's secret, for the current call only. Raises CREDENTIAL_UNAVAILABLE."""
        context = SealContext(row.tenant_id, row.id, row.provider)
        try:
            plaintext = self._open_with_fresh_keyring(row.ciphertext, context)
        except OpenError as exc:
            self._audit_open(row, actor, request_id, purpose, outcome="denied", cause=exc.cause.name)
            raise credential_unavailable() from None
        self._audit_open(row, actor, request_id, purpose, outcome="ok")
        registered = row.ciphertext in self._registered
        secret = Secret.from_bytes(plaintext, registered=registered)
        if not registered:
            if len(self._registered) >= _MAX_REGISTERED:
                self._registered.clear()
            self._registered.add(row.ciphertext)
        return secret

    def _open_with_fresh_keyring(self, blob: bytes, context: SealContext) -> bytes:
        try:
            return open_sealed(self._keyrings.current(), blob, context)
        except OpenError as exc:
            # A key this process has not seen yet (rotated by another process): reread the
            # keyring file once. The key is still chosen by the id in the ciphertext.
            if exc.cause is not OpenFailure.UNKNOWN_KEY:
                raise
            return open_sealed(self._keyrings.reload(), blob, context)

    def _audit_open(
        self, row: CredentialRow, actor: str, request_id: str, purpose: str, *, outcome: str, cause: str = ""
    ) -> None:
        detail = {"purpose": purpose, "provider": row.provider, "key_id": str(row.key_id)}
        if cause:
            detail["cause"] = cause
        self._audit.record(
            "credential.decrypt",
            outcome,
            tenant_id=row.tenant_id,
            credential_id=row.id,
            actor=actor,
            request_id=request_id,
            detail=detail,
        )
