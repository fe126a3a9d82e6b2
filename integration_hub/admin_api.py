"""AdminService: what the admin console needs beyond the other services (admin.proto).

Tokens (list, mint, revoke), the tenant's routes and limits as the policy file has them,
its recent failed calls, and the keyring's state. The tenant is always the calling
token's; nothing here reads or shows a token, a key's material or a provider secret.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from integration_hub.audit import AuditLog
from integration_hub.auth import mint_token, revoke_token
from integration_hub.cache import RowCache
from integration_hub.config import Settings
from integration_hub.errors import HubError, invalid_field
from integration_hub.key_admin import key_status
from integration_hub.policy import Limits, Policy, PolicyConfig, PolicyError, PolicySource
from integration_hub.rpc import CallContext, scope_name
from integration_hub.store.base import Store, TokenRow, UsageRow
from integration_hub.v1 import admin_pb2 as pb
from integration_hub.v1 import common_pb2
from integration_hub.vault import format_key_id

MAX_TOKEN_NAME = 200
DEFAULT_ERRORS = 50
MAX_ERRORS = 200
# Recent errors are found among this many of the tenant's latest usage records: a bounded
# read however long the tenant's history is.
ERROR_SCAN_ROWS = 2000
# Pages of the tenant's credentials read to count them per key.
CREDENTIAL_PAGE = 500


def _timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def token_message(row: TokenRow) -> pb.HubToken:
    return pb.HubToken(
        id=row.id,
        name=row.name,
        scopes=sorted(common_pb2.Scope.Value("SCOPE_" + scope.upper()) for scope in row.scopes),
        create_time=_timestamp(row.created_at),
        expire_time=_timestamp(row.expires_at),
        revoke_time=_timestamp(row.revoked_at),
    )


def _scopes(values: Any) -> list[str]:
    if not values:
        raise invalid_field("scopes", "required: at least one of SCOPE_ADMIN, SCOPE_INVOKE")
    if common_pb2.SCOPE_UNSPECIFIED in values:
        raise invalid_field("scopes", "SCOPE_UNSPECIFIED is not a scope")
    try:
        return [scope_name(value) for value in values]
    except ValueError:
        raise invalid_field("scopes", "unknown scope") from None


def _expiry(request: pb.CreateTokenRequest, now: datetime) -> datetime | None:
    if not request.HasField("expire_time"):
        return None
    try:
        moment = request.expire_time.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise invalid_field("expire_time", "not a valid timestamp") from None
    if moment <= now:
        raise invalid_field("expire_time", "must be in the future")
    return moment


def _limits(limits: Limits) -> pb.RateLimits:
    return pb.RateLimits(
        requests_per_minute=limits.requests_per_minute or 0, tokens_per_minute=limits.tokens_per_minute or 0
    )


def _overrides(values: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in sorted(values.items())}


def _settings(policy: Policy) -> pb.PolicySettings:
    return pb.PolicySettings(
        total_timeout_seconds=policy.total_timeout,
        connect_timeout_seconds=policy.connect_timeout,
        first_byte_timeout_seconds=policy.first_byte_timeout,
        max_attempts=policy.max_attempts,
        backoff_base_seconds=policy.backoff_base,
        backoff_max_seconds=policy.backoff_max,
        breaker_failures=policy.breaker_failures,
        breaker_cooldown_seconds=policy.breaker_cooldown,
        max_in_flight=policy.max_in_flight,
        max_queued=policy.max_queued,
    )


def policy_view(config: PolicyConfig, tenant_id: str) -> pb.GetPolicyResponse:
    tenant = config.tenant(tenant_id)
    names = sorted(set(tenant.credential_limits) | set(tenant.credential_overrides))
    return pb.GetPolicyResponse(
        defaults=_settings(config.defaults),
        tenant_limits=_limits(tenant.limits),
        credentials=[
            pb.CredentialPolicy(
                credential=name,
                limits=_limits(tenant.credential_limits.get(name, Limits())),
                overrides=_overrides(tenant.credential_overrides.get(name, {})),
            )
            for name in names
        ],
        routes=[
            pb.PolicyRoute(
                name=route.name,
                targets=[pb.RouteTarget(credential=t.credential, model=t.model) for t in route.targets],
                overrides=_overrides(route.overrides),
            )
            for _, route in sorted(tenant.routes.items())
        ],
    )


def error_message(row: UsageRow) -> pb.RecentError:
    return pb.RecentError(
        time=_timestamp(row.at),
        operation=row.operation,
        credential_id=row.credential_id,
        credential_name=row.credential_name,
        provider=row.provider,
        model=row.model,
        status=row.status,
        reason=row.reason,
        request_id=row.request_id,
        latency_ms=row.latency_ms,
    )


def _moment(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class AdminApi:
    def __init__(
        self,
        store: Store,
        token_cache: RowCache,
        settings: Settings,
        audit: AuditLog,
    ) -> None:
        self._store = store
        self._token_cache = token_cache
        # Hub.open refuses to start without a keyring file, so this is always set there.
        self._keyring_path = settings.keyring_file or ""
        self._audit = audit
        # The same file the policy engine reads (and re-reads within a second of a change);
        # a source of its own keeps this read-only view apart from the engine's internals.
        self._policy = PolicySource(settings.policy_file)

    # --- tokens -------------------------------------------------------------------------

    async def ListTokens(self, request: pb.ListTokensRequest, call: CallContext) -> pb.ListTokensResponse:
        rows = await self._store.list_tokens(call.principal.tenant_id)
        rows.sort(key=lambda row: (row.created_at, row.id), reverse=True)
        return pb.ListTokensResponse(tokens=[token_message(row) for row in rows])

    async def CreateToken(self, request: pb.CreateTokenRequest, call: CallContext) -> pb.CreateTokenResponse:
        if len(request.name) > MAX_TOKEN_NAME:
            raise invalid_field("name", f"at most {MAX_TOKEN_NAME} characters")
        scopes = _scopes(request.scopes)
        expires_at = _expiry(request, datetime.now(UTC))
        row, secret = await mint_token(
            self._store,
            tenant_id=call.principal.tenant_id,
            scopes=scopes,
            name=request.name,
            expires_at=expires_at,
        )
        self._record("token.create", row, call)
        return pb.CreateTokenResponse(token=token_message(row), secret=secret)

    async def RevokeToken(self, request: pb.RevokeTokenRequest, call: CallContext) -> pb.RevokeTokenResponse:
        if not request.token_id:
            raise invalid_field("token_id", "required")
        # The store revokes by id alone: the tenant's own list is what makes another
        # tenant's token id "not found" here rather than revocable.
        owned = {row.id for row in await self._store.list_tokens(call.principal.tenant_id)}
        if request.token_id not in owned:
            raise HubError(
                grpc.StatusCode.NOT_FOUND,
                "INVALID_FIELD",
                "token_id: no such token in this tenant",
                {"field": "token_id"},
            )
        row = await revoke_token(self._store, self._token_cache, request.token_id)
        if row is None:  # deleted between the two reads
            raise HubError(
                grpc.StatusCode.NOT_FOUND, "INVALID_FIELD", "token_id: no such token", {"field": "token_id"}
            )
        self._record("token.revoke", row, call)
        return pb.RevokeTokenResponse(token=token_message(row))

    def _record(self, action: str, row: TokenRow, call: CallContext) -> None:
        self._audit.record(
            action,
            "ok",
            tenant_id=row.tenant_id,
            actor=call.principal.token_id,
            request_id=call.request_id,
            detail={"token_id": row.id, "scopes": ",".join(row.scopes)},
        )

    # --- routes and limits ----------------------------------------------------------------

    async def GetPolicy(self, request: pb.GetPolicyRequest, call: CallContext) -> pb.GetPolicyResponse:
        try:
            config = self._policy.current()
        except PolicyError as exc:
            raise HubError(
                grpc.StatusCode.FAILED_PRECONDITION, "INVALID_FIELD", f"the policy file is unusable: {exc}"
            ) from None
        return policy_view(config, call.principal.tenant_id)

    # --- recent errors --------------------------------------------------------------------

    async def ListRecentErrors(
        self, request: pb.ListRecentErrorsRequest, call: CallContext
    ) -> pb.ListRecentErrorsResponse:
        if request.page_size < 0:
            raise invalid_field("page_size", "must not be negative")
        wanted = min(request.page_size or DEFAULT_ERRORS, MAX_ERRORS)
        rows = await self._store.list_usage_records(call.principal.tenant_id, limit=ERROR_SCAN_ROWS)
        failed = [row for row in rows if row.status != "OK"][:wanted]
        return pb.ListRecentErrorsResponse(errors=[error_message(row) for row in failed])

    # --- keyring ----------------------------------------------------------------------------

    async def GetKeyringStatus(
        self, request: pb.GetKeyringStatusRequest, call: CallContext
    ) -> pb.GetKeyringStatusResponse:
        # key_status reads the keyring file (small, local) and the hub-wide counters.
        statuses, own = await asyncio.gather(
            key_status(self._keyring_path, self._store), self._tenant_rows_by_key(call.principal.tenant_id)
        )
        usable = [s.id for s in statuses if s.state in ("primary", "active")]
        primary = next((s.id for s in statuses if s.state == "primary"), "")
        return pb.GetKeyringStatusResponse(
            primary_key_id=primary,
            min_decryption_key_id=min(usable, key=lambda text: int(text[1:]), default=""),
            keys=[
                pb.KeyStatus(
                    id=s.id,
                    state=s.state,
                    create_time=_timestamp(_moment(s.created_at)),
                    retire_time=_timestamp(_moment(s.retired_at)),
                    # Only this tenant's credentials: other tenants' counts are not its business.
                    credentials=own.get(s.id, 0),
                    encryptions=s.encryptions,
                    warning=s.warning,
                )
                for s in statuses
            ],
        )

    async def _tenant_rows_by_key(self, tenant_id: str) -> Counter[str]:
        counts: Counter[str] = Counter()
        after: str | None = None
        while True:
            page = await self._store.list_credentials(
                tenant_id, provider=None, after_name=after, limit=CREDENTIAL_PAGE
            )
            counts.update(format_key_id(row.key_id) for row in page)
            if len(page) < CREDENTIAL_PAGE:
                return counts
            after = page[-1].name
