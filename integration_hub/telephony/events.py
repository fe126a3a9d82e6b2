"""The provider's call events: received on a call's public URL, applied once and in order,
and fanned out to WatchCalls.

Receiving: the call's token (from the URL path) is checked first, in constant time and
before anything is decrypted, and an unknown call and a wrong token get the same 403;
then the provider's own signature (the caller's CallEventHandler, with the credential's
secret opened for this one check); then its events are parsed and stored, each once (by
the provider's event id) and only moving the call forward (apply(), which reconcile.py
uses too for what a provider answers about a silent call). A call whose place answer was
lost has no provider id: its first event gives it one. The media websocket's opening
request is checked the same way (authenticate_media: Twilio signs it).

Watching: a watcher tails the store's event log of its tenant (after a sequence), woken
at once by events this process applied and otherwise every POLL_SECONDS, which is how
events received by another worker or replica reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc

from callers import errors as caller_errors
from callers import registry
from callers import types as t
from callers.base import Capability
from integration_hub import metrics
from integration_hub.credentials import CredentialService
from integration_hub.errors import HubError
from integration_hub.ids import unique_id
from integration_hub.rpc import CallContext, Principal
from integration_hub.store.base import Store
from integration_hub.store.calls import CallEventRow, CallRow
from integration_hub.telephony import urls as call_urls
from integration_hub.telephony.convert import neutral_action

log = logging.getLogger("integration_hub.telephony")
POLL_SECONDS = 0.25
BATCH = 500
MAX_RAW_FIELDS, MAX_RAW_CHARS = 64, 1000


class WebhookRefused(Exception):
    """A webhook request the hub does not accept: its HTTP status, and a message that
    names the problem without echoing anything secret."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def forbidden() -> WebhookRefused:
    # One answer for "no such call" and "wrong token": no oracle for guessing call ids.
    return WebhookRefused(403, "unknown call or wrong token")


def _webhook_context(row: CallRow) -> CallContext:
    # The audit trail names who opened the secret: the provider's webhook for this call.
    principal = Principal(tenant_id=row.tenant_id, token_id=f"webhook:{row.provider}", scopes=frozenset())
    return CallContext(principal, unique_id(), "/telephony/v1/events")


def _raw(fields: dict[str, str]) -> dict[str, str]:
    """The provider's fields as kept with an event: bounded in count and size."""
    kept = dict(list(fields.items())[:MAX_RAW_FIELDS])
    return {k[:100]: v[:MAX_RAW_CHARS] for k, v in kept.items()}


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


class CallEvents:
    def __init__(self, store: Store, credentials: CredentialService) -> None:
        self._store = store
        self._credentials = credentials
        # Per tenant with watchers in this process: the event set when its log grows.
        self._signals: dict[str, asyncio.Event] = {}
        self._watchers: dict[str, int] = {}

    # --- receiving ---------------------------------------------------------------------

    async def authenticated_call(self, call_id: str, token: str) -> CallRow:
        row = await self._store.get_call_by_id(call_id)
        if row is None or not call_urls.token_matches(token, row.token_hash):
            raise forbidden()
        return row

    async def authenticate_media(self, row: CallRow, request: t.WebhookRequest) -> dict[str, str]:
        """Check the opening request of the call's media websocket as its provider signs it
        (the call's token already matched); answers the credential's options."""
        handler: Any = registry.capability(row.provider, Capability.CALL_EVENTS)
        options, secret = await self._open(row)
        try:
            handler.authenticate_media(secret, options, request)
        except caller_errors.WebhookRejected as exc:
            log.warning("rejected a %s media websocket for call %s: %s", row.provider, row.id, exc.message)
            raise WebhookRefused(403, f"signature check failed: {exc.message}") from None
        return options

    async def _open(self, row: CallRow) -> tuple[dict[str, str], Any]:
        try:
            credential = await self._credentials.resolve(row.tenant_id, row.credential_id)
        except HubError:
            raise WebhookRefused(403, "the call's credential no longer exists") from None
        credential, secret = await self._credentials.open(credential, _webhook_context(row), "call_events")
        return dict(credential.options), secret

    async def receive(self, call_id: str, token: str, request: t.WebhookRequest) -> int:
        """Apply a status callback; answers how many events were new."""
        row = await self.authenticated_call(call_id, token)
        handler: Any = registry.capability(row.provider, Capability.CALL_EVENTS)
        options, secret = await self._open(row)
        try:
            handler.authenticate(secret, options, request)
        except caller_errors.WebhookRejected as exc:
            log.warning("rejected a %s webhook for call %s: %s", row.provider, call_id, exc.message)
            raise WebhookRefused(403, f"signature check failed: {exc.message}") from None
        try:
            events = handler.parse_events(options, request)
        except caller_errors.InvalidRequest as exc:
            raise WebhookRefused(400, f"malformed event: {exc.message}") from None
        for event in events:
            if (
                event.provider_call_id
                and row.provider_call_id
                and event.provider_call_id != row.provider_call_id
            ):
                raise WebhookRefused(400, "the event names another call than the URL's")
        return await self.apply(row, events)

    async def apply(self, row: CallRow, events: list[t.CallEvent]) -> int:
        """Store a call's events (a webhook's, or the provider's answer when a silent call
        is reconciled), each once and only moving the call forward; how many were new."""
        adopted = next((e.provider_call_id for e in events if e.provider_call_id), "")
        if adopted and not row.provider_call_id:
            # Its place answer was lost (outcome unknown): its events say which call it is.
            await self._store.adopt_provider_call_id(row.id, adopted)
        new = 0
        for event in events:
            stored, _ = await self._store.add_call_event(self._row(row, event))
            new += stored is not None
            outcome = "duplicate" if stored is None else "applied" if stored.applied else "late"
            metrics.CALL_EVENTS.labels(row.provider, outcome).inc()
        if new:
            self._notify(row.tenant_id)
        return new

    @staticmethod
    def _row(call: CallRow, event: t.CallEvent) -> CallEventRow:
        status = event.status
        return CallEventRow(
            call_id=call.id,
            tenant_id=call.tenant_id,
            campaign_id=call.campaign_id,
            event_id=event.event_id[:200],
            received_at=datetime.now(UTC),
            status="" if status is None else status.value,
            status_rank=None if status is None else status.rank,
            provider_status=event.raw_status[:100],
            occurred_at=event.occurred_at,
            duration_ms=_ms(event.duration_seconds),
            answered_by=(event.answered_by or "")[:50],
            error=event.error[:500],
            raw=_raw(event.raw),
        )

    async def answer(
        self, call_id: str, token: str, request: t.WebhookRequest, urls: call_urls.CallUrls
    ) -> t.Instructions:
        """The call's instructions, for a provider that asks for them when it is answered."""
        row = await self.authenticated_call(call_id, token)
        handler: Any = registry.capability(row.provider, Capability.CALL_EVENTS)
        options, secret = await self._open(row)
        try:
            handler.authenticate(secret, options, request)
        except caller_errors.WebhookRejected as exc:
            raise WebhookRefused(403, f"signature check failed: {exc.message}") from None
        action = neutral_action(row.action, urls.media(row.id, token))
        # As placed inline: the call's metadata rides along as stream parameters (the
        # action's own parameters win a clash).
        action.stream_parameters = {**row.metadata, **action.stream_parameters}
        try:
            instructions: t.Instructions = handler.answer(options, request, action)
        except caller_errors.NotSupported:
            raise WebhookRefused(
                404, f"{row.provider} calls carry their instructions; none are served"
            ) from None
        return instructions

    # --- watching ----------------------------------------------------------------------

    def _notify(self, tenant_id: str) -> None:
        signal = self._signals.get(tenant_id)
        if signal is not None:
            signal.set()
            self._signals[tenant_id] = asyncio.Event()

    async def watch(
        self, tenant_id: str, *, after_sequence: int, campaign_id: str | None
    ) -> AsyncIterator[tuple[CallEventRow, CallRow]]:
        """The tenant's events after `after_sequence` (0: from now), as they are stored."""
        if after_sequence < 0:
            raise HubError(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", "after_sequence: must be >= 0")
        cursor = after_sequence or await self._store.last_call_event_sequence(tenant_id)
        self._watchers[tenant_id] = self._watchers.get(tenant_id, 0) + 1
        self._signals.setdefault(tenant_id, asyncio.Event())
        try:
            while True:
                # Taken before reading: an event stored after the read sets this one.
                signal = self._signals[tenant_id]
                batch = await self._store.list_call_events(
                    tenant_id, cursor, campaign_id=campaign_id, limit=BATCH
                )
                for event, call in batch:
                    cursor = event.sequence
                    yield event, call
                if len(batch) == BATCH:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signal.wait(), POLL_SECONDS)
        finally:
            self._watchers[tenant_id] -= 1
            if not self._watchers[tenant_id]:
                del self._watchers[tenant_id]
                self._signals.pop(tenant_id, None)
