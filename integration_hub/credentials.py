"""CredentialService: the logic of storing, reading, changing and verifying
provider credentials, transport-free. The tenant is always the caller's
(principal.tenant_id); a request can name only its own tenant's credentials.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

import grpc

from callers import registry
from callers.base import CallerError, MissingExtra, NotSupported, VerifyResult
from callers.spec import InvalidCredentialField, ProviderSpec
from integration_hub.audit import AuditLog
from integration_hub.cache import RowCache, credential_key_by_ref, credential_keys
from integration_hub.dispatch import from_caller_error
from integration_hub.errors import HubError, credential_not_found, invalid_field
from integration_hub.rpc import CallContext
from integration_hub.store.base import CredentialRow, DuplicateName, StaleWrite, Store
from integration_hub.v1 import credentials_pb2 as pb
from integration_hub.vault.redaction import redact
from integration_hub.vault.secret import Secret, mask_hint
from integration_hub.vault.service import Vault

# No "/" so that "<credential name>/<model>" splits unambiguously.
_ID_SHAPE = re.compile(r"[0-9a-f]{32}")  # uuid.uuid4().hex, as create_credential makes them
_NAME_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,99}")
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 500
DEFAULT_VERIFY_TIMEOUT, MAX_VERIFY_TIMEOUT = 10.0, 60.0
_UPDATABLE = ("name", "secret", "options")


def provider_spec(name: str, field_path: str = "provider") -> ProviderSpec:
    if not name:
        raise invalid_field(field_path, "required")
    try:
        return registry.spec(name)
    except registry.UnknownProvider:
        raise HubError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "UNKNOWN_PROVIDER",
            f"{field_path}: unknown provider {name!r}; ListProviders names the known ones",
            {"field": field_path, "provider": name},
        ) from None


def check_name(name: str, field_path: str = "name") -> str:
    if not name:
        raise invalid_field(field_path, "required")
    if not _NAME_SHAPE.fullmatch(name):
        raise invalid_field(
            field_path, "use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def validated(spec: ProviderSpec, secret: Mapping[str, str], options: Mapping[str, str]) -> dict[str, str]:
    """Checks the secret and options against the provider's schema; returns options with defaults."""
    try:
        spec.validate(secret, options)
    except InvalidCredentialField as exc:
        raise invalid_field(exc.field, exc.message) from None
    return spec.with_defaults(options)


def to_proto(row: CredentialRow) -> pb.Credential:
    credential = pb.Credential(
        id=row.id,
        name=row.name,
        provider=row.provider,
        hint=row.hint,
        options=row.options,
        secret_fields=row.secret_fields,
        revision=row.version,
    )
    credential.create_time.FromDatetime(row.created_at)
    credential.update_time.FromDatetime(row.updated_at)
    return credential


def _encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _decode_cursor(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid_field(
            "page_token", "malformed; pass a next_page_token from a previous response"
        ) from None


class CredentialService:
    def __init__(self, store: Store, cache: RowCache, vault: Vault, audit: AuditLog) -> None:
        self._store = store
        self._cache = cache
        self._vault = vault
        self._audit = audit

    # --- lookups shared by every capability ----------------------------------

    async def resolve(self, tenant_id: str, ref: str, field_path: str = "id") -> CredentialRow:
        """A credential of this tenant by id or by name (ciphertext row, from cache or store)."""
        if not ref:
            raise invalid_field(field_path, "required: a credential id or name")
        row = None
        # Only a ref shaped like an id (uuid4 hex) can be one: a name skips the id lookup,
        # whose miss no cache keeps, so calls by name do not query the store every time.
        if _ID_SHAPE.fullmatch(ref):
            by_id = credential_key_by_ref(tenant_id, "id", ref)
            row = await self._cache.get(by_id, lambda: self._store.get_credential(tenant_id, ref))
        if row is None:
            row = await self._cache.get(
                credential_key_by_ref(tenant_id, "name", ref),
                lambda: self._store.get_credential_by_name(tenant_id, ref),
            )
        if row is None:
            raise credential_not_found(ref)
        return row

    async def open(self, row: CredentialRow, call: CallContext, purpose: str) -> tuple[CredentialRow, Secret]:
        """The row's secret for this call, and the row it came from.

        A cached row may be stale: rewrapped and its old key retired by another process
        that could not reach this replica's in-process cache (no Redis). When the cached
        ciphertext does not open, re-read the row from the store once and try that.
        """
        try:
            return row, self._open_row(row, call, purpose)
        except HubError as first_failure:
            await self._cache.invalidate(credential_keys(row))
            fresh = await self._store.get_credential(row.tenant_id, row.id)
            if fresh is None or fresh.ciphertext == row.ciphertext:
                raise first_failure from None
            return fresh, self._open_row(fresh, call, purpose)

    def _open_row(self, row: CredentialRow, call: CallContext, purpose: str) -> Secret:
        return self._vault.open(
            row, actor=call.principal.token_id, request_id=call.request_id, purpose=purpose
        )

    async def all_of_tenant(self, tenant_id: str) -> list[CredentialRow]:
        rows: list[CredentialRow] = []
        while True:
            page = await self._store.list_credentials(
                tenant_id, provider=None, after_name=rows[-1].name if rows else None, limit=MAX_PAGE_SIZE
            )
            rows += page
            if len(page) < MAX_PAGE_SIZE:
                return rows

    # --- RPCs ------------------------------------------------------------------

    async def CreateCredential(
        self, request: pb.CreateCredentialRequest, call: CallContext
    ) -> pb.CreateCredentialResponse:
        spec = provider_spec(request.provider)
        name = check_name(request.name)
        secret = dict(request.secret)
        options = validated(spec, secret, request.options)
        tenant = call.principal.tenant_id
        credential_id = uuid.uuid4().hex
        ciphertext, key_id = await self._vault.seal(
            secret, tenant_id=tenant, credential_id=credential_id, provider=spec.name
        )
        now = datetime.now(UTC)
        row = CredentialRow(
            id=credential_id,
            tenant_id=tenant,
            name=name,
            provider=spec.name,
            options=options,
            ciphertext=ciphertext,
            key_id=key_id,
            hint=mask_hint(spec.hint_source(secret)),
            secret_fields=tuple(sorted(secret)),
            created_at=now,
            updated_at=now,
        )
        try:
            await self._store.insert_credential(row)
        except DuplicateName:
            raise self._duplicate(name) from None
        self._record("credential.create", row, call)
        return pb.CreateCredentialResponse(credential=to_proto(row))

    async def GetCredential(
        self, request: pb.GetCredentialRequest, call: CallContext
    ) -> pb.GetCredentialResponse:
        row = await self.resolve(call.principal.tenant_id, request.id)
        return pb.GetCredentialResponse(credential=to_proto(row))

    async def ListCredentials(
        self, request: pb.ListCredentialsRequest, call: CallContext
    ) -> pb.ListCredentialsResponse:
        if request.page_size < 0:
            raise invalid_field("page_size", "must not be negative")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        if request.provider:
            provider_spec(request.provider)
        after = _decode_cursor(request.page_token) if request.page_token else None
        rows = await self._store.list_credentials(
            call.principal.tenant_id, provider=request.provider or None, after_name=after, limit=size + 1
        )
        page, more = rows[:size], len(rows) > size
        return pb.ListCredentialsResponse(
            credentials=[to_proto(r) for r in page],
            next_page_token=_encode_cursor(page[-1].name) if more else "",
        )

    async def UpdateCredential(
        self, request: pb.UpdateCredentialRequest, call: CallContext
    ) -> pb.UpdateCredentialResponse:
        row = await self.resolve(call.principal.tenant_id, request.id)
        paths = self._update_paths(request)
        if "secret" in paths:
            secret = dict(request.secret)
        else:
            # Options are checked together with the secret (some rules span both), so open it.
            row, opened = await self.open(row, call, "update")
            secret = {f: opened.reveal(f) for f in opened.field_names()}
        spec = provider_spec(row.provider)
        name = check_name(request.name) if "name" in paths else row.name
        options = dict(request.options) if "options" in paths else dict(row.options)
        options = validated(spec, secret, options)
        ciphertext, key_id, hint = row.ciphertext, row.key_id, row.hint
        if "secret" in paths:
            ciphertext, key_id = await self._vault.seal(
                secret, tenant_id=row.tenant_id, credential_id=row.id, provider=row.provider
            )
            hint = mask_hint(spec.hint_source(secret))
        updated = CredentialRow(
            id=row.id,
            tenant_id=row.tenant_id,
            name=name,
            provider=row.provider,
            options=options,
            ciphertext=ciphertext,
            key_id=key_id,
            hint=hint,
            secret_fields=tuple(sorted(secret)) if "secret" in paths else row.secret_fields,
            created_at=row.created_at,
            updated_at=datetime.now(UTC),
            version=row.version,
        )
        try:
            stored = await self._store.update_credential(updated, expected_version=row.version)
        except DuplicateName:
            raise self._duplicate(name) from None
        except StaleWrite:
            raise HubError(
                grpc.StatusCode.ABORTED,
                "CONCURRENT_UPDATE",
                "the credential changed while this update ran; read it again and retry",
            ) from None
        finally:
            await self._cache.invalidate(credential_keys(row) + credential_keys(updated))
        self._record("credential.update", stored, call, {"fields": ",".join(sorted(paths))})
        return pb.UpdateCredentialResponse(credential=to_proto(stored))

    async def DeleteCredential(
        self, request: pb.DeleteCredentialRequest, call: CallContext
    ) -> pb.DeleteCredentialResponse:
        row = await self.resolve(call.principal.tenant_id, request.id)
        deleted = await self._store.delete_credential(row.tenant_id, row.id)
        await self._cache.invalidate(credential_keys(row))
        if not deleted:
            raise credential_not_found(request.id)
        self._record("credential.delete", row, call)
        return pb.DeleteCredentialResponse(id=row.id)

    async def VerifyCredential(
        self, request: pb.VerifyCredentialRequest, call: CallContext
    ) -> pb.VerifyCredentialResponse:
        timeout = self._verify_timeout(request, call)
        if request.id:
            if request.provider or request.secret:
                raise invalid_field(
                    "id", "give either id (a stored credential) or provider + secret, not both"
                )
            row = await self.resolve(call.principal.tenant_id, request.id)
            row, secret = await self.open(row, call, "verify")
            provider, options = row.provider, dict(row.options)
        else:
            spec = provider_spec(request.provider)
            if not request.secret:
                raise invalid_field("secret", "required when no stored credential id is given")
            options = validated(spec, request.secret, request.options)
            provider, secret = spec.name, Secret(dict(request.secret))
        started = time.monotonic()
        result = await self._verify(provider, secret, options, timeout)
        del secret  # the plaintext's last reference in this call
        response = pb.VerifyCredentialResponse(
            valid=result.valid,
            reason=redact(result.reason),
            provider=provider,
            outcome=self._outcome(result),
            detail=result.detail,
        )
        response.latency.FromNanoseconds(int((time.monotonic() - started) * 1e9))
        return response

    async def ListProviders(
        self, request: pb.ListProvidersRequest, call: CallContext
    ) -> pb.ListProvidersResponse:
        return pb.ListProvidersResponse(providers=[_provider_proto(s) for s in registry.specs()])

    # --- helpers ----------------------------------------------------------------

    async def _verify(
        self, provider: str, secret: Secret, options: Mapping[str, str], timeout: float
    ) -> VerifyResult:
        try:
            async with asyncio.timeout(timeout + 1.0):  # backstop in case a caller ignores its timeout
                return await registry.verify(provider, secret, options, timeout=timeout)
        except (MissingExtra, NotSupported) as exc:
            raise from_caller_error(exc) from None
        except CallerError as exc:
            return VerifyResult(
                valid=False, reason=f"inconclusive: {exc.message}", detail={"error": type(exc).__name__}
            )
        except TimeoutError:
            return VerifyResult(
                valid=False,
                reason=f"inconclusive: no answer within {timeout:g}s",
                detail={"error": "ProviderTimeout"},
            )

    @staticmethod
    def _outcome(result: VerifyResult) -> pb.VerifyOutcome.ValueType:
        if result.valid:
            return pb.VERIFY_OUTCOME_VALID
        if "error" in result.detail:
            return pb.VERIFY_OUTCOME_INCONCLUSIVE
        return pb.VERIFY_OUTCOME_REJECTED

    @staticmethod
    def _verify_timeout(request: pb.VerifyCredentialRequest, call: CallContext) -> float:
        if request.HasField("timeout"):
            asked = request.timeout.ToNanoseconds() / 1e9
            if not 0 < asked <= MAX_VERIFY_TIMEOUT:
                raise invalid_field("timeout", f"must be more than 0 and at most {MAX_VERIFY_TIMEOUT:g}s")
        else:
            asked = DEFAULT_VERIFY_TIMEOUT
        return call.time_left(asked)

    @staticmethod
    def _update_paths(request: pb.UpdateCredentialRequest) -> set[str]:
        if request.HasField("update_mask") and request.update_mask.paths:
            paths = set(request.update_mask.paths)
            unknown = paths - set(_UPDATABLE)
            if unknown:
                raise invalid_field(
                    "update_mask.paths", f"unknown {sorted(unknown)}; updatable: {list(_UPDATABLE)}"
                )
        else:
            paths = {p for p in _UPDATABLE if getattr(request, p)}
        if not paths:
            raise invalid_field("update_mask", "nothing to update: set name, secret or options")
        if "secret" in paths and not request.secret:
            raise invalid_field("secret", "an empty secret cannot replace the stored one")
        return paths

    @staticmethod
    def _duplicate(name: str) -> HubError:
        return HubError(
            grpc.StatusCode.ALREADY_EXISTS,
            "DUPLICATE_CREDENTIAL_NAME",
            f"this tenant already has a credential named {name!r}",
            {"field": "name", "name": name},
        )

    def _record(
        self, action: str, row: CredentialRow, call: CallContext, detail: dict[str, str] | None = None
    ) -> None:
        self._audit.record(
            action,
            "ok",
            tenant_id=row.tenant_id,
            credential_id=row.id,
            actor=call.principal.token_id,
            request_id=call.request_id,
            detail={"provider": row.provider, "name": row.name, **(detail or {})},
        )


def _provider_proto(spec: ProviderSpec) -> pb.Provider:
    def fields(items: tuple[registry.CredentialField, ...]) -> list[pb.CredentialField]:
        return [
            pb.CredentialField(
                name=f.name,
                required=f.required,
                description=f.description,
                kind=f.kind,
                default_value=f.default or "",
                choices=f.choices,
            )
            for f in items
        ]

    return pb.Provider(
        name=spec.name,
        display_name=spec.display_name,
        capabilities=sorted(c.value for c in spec.capabilities),
        secret_fields=fields(spec.secret_fields),
        option_fields=fields(spec.option_fields),
        extra=spec.extra,
        installed=registry.sdk_installed(spec.name),
    )
