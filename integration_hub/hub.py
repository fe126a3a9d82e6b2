"""The composition root: builds the store, caches, keyring, vault, audit trail and
services from Settings, and answers readiness. Both the server and the CLI
start from here, so there is one way the pieces are put together.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from callers import pools as callers_pools
from callers.errors import CallerError
from integration_hub import metrics, tracing
from integration_hub.admin_api import AdminApi
from integration_hub.audit import AuditLog
from integration_hub.auth import Authenticator
from integration_hub.cache import RowCache
from integration_hub.call_record import CallObserver
from integration_hub.config import Settings
from integration_hub.credentials import CredentialService
from integration_hub.dispatch import Dispatcher
from integration_hub.http.openai_adapter import OpenAIAdapter
from integration_hub.identity import IdentityApi
from integration_hub.llm import ChatApi, LlmService
from integration_hub.policy import PolicyEngine, PolicyError, PolicySource, RateLimiter
from integration_hub.rpc import method_table
from integration_hub.speech import SpeechService
from integration_hub.speech_api import SpeechApi
from integration_hub.store import open_store
from integration_hub.store.base import Store
from integration_hub.telephony.api import TelephonyApi
from integration_hub.telephony.calls import TelephonyCalls
from integration_hub.telephony.campaign_api import CampaignApi
from integration_hub.telephony.campaigns import CampaignRunner
from integration_hub.telephony.events import CallEvents
from integration_hub.telephony.media_agent import CallMediaStreams
from integration_hub.telephony.reconcile import CallReconciler
from integration_hub.telephony.urls import CallUrls
from integration_hub.telephony.webhooks import TelephonyWebhooks
from integration_hub.usage import UsageApi, UsageRecorder
from integration_hub.v1 import (
    admin_pb2,
    chat_pb2,
    credentials_pb2,
    identity_pb2,
    speech_pb2,
    telephony_pb2,
    usage_pb2,
)
from integration_hub.vault import KeyringError, KeyringSource
from integration_hub.vault.service import Vault

log = logging.getLogger("integration_hub")
# Token rows are re-read at least this often, so that a revocation reaches every
# replica within a second even without Redis pub/sub.
TOKEN_CACHE_SECONDS = 1.0
PROBE_TIMEOUT = 2.0
# Set by the supervisor for its workers (integration_hub/workers.py); internal, not a setting.
MEDIA_DIR_ENV = "HUB_MEDIA_DIR"


class StartupError(RuntimeError):
    """The hub cannot start; the message says why and what to do."""


def media_directory() -> tuple[str, str | None]:
    """Where a call's two media ends meet (telephony/media_link.py): the supervisor's
    directory, shared by its workers, or one of this process's own (returned second,
    to be removed at close)."""
    shared = os.environ.get(MEDIA_DIR_ENV)
    if shared:
        return shared, None
    own = tempfile.mkdtemp(prefix="integration-hub-media-")  # mode 0700
    return own, own


def preload_audio() -> None:
    """Import the audio stack (numpy, soxr) now, not on the event loop at a worker's first
    call media or speech stream: importing takes 0.1-0.3 s, a stall every other live call
    on the worker would hear. Without the speech extra there is nothing to load."""
    try:
        import callers.audio.stream  # noqa: F401
    except (ImportError, CallerError):
        log.debug("audio stack not installed (speech extra): speech and call media are unavailable")


def load_keyrings(settings: Settings) -> KeyringSource:
    if not settings.keyring_file:
        raise StartupError(
            "HUB_KEYRING_FILE is not set; there is no default key. Create a keyring with "
            "`integration-hub keys init --file PATH` and set HUB_KEYRING_FILE=PATH"
        )
    try:
        return KeyringSource(settings.keyring_file)
    except KeyringError as exc:
        raise StartupError(f"keyring {settings.keyring_file}: {exc}") from None


def build_policy_engine(settings: Settings) -> tuple[PolicyEngine, Any]:
    """The policy engine, with rate limits shared through Redis when it is configured."""
    try:
        source = PolicySource(settings.policy_file)
    except (OSError, PolicyError) as exc:
        raise StartupError(f"policy file {settings.policy_file}: {exc}") from None
    redis_client = None
    if settings.redis_url:
        import redis.asyncio as aioredis

        redis_client = aioredis.from_url(settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    return PolicyEngine(source, RateLimiter(redis_client), metrics.PolicyMetrics()), redis_client


@dataclass
class Hub:
    settings: Settings
    store: Store
    credential_cache: RowCache
    token_cache: RowCache
    keyrings: KeyringSource
    audit: AuditLog
    vault: Vault
    credentials: CredentialService
    llm: LlmService
    dispatcher: Dispatcher
    openai: OpenAIAdapter
    policy_engine: PolicyEngine | None = None
    # The Redis client the rate limiter uses (None without HUB_REDIS_URL).
    limiter_redis: Any = None
    usage: UsageRecorder | None = None
    speech: SpeechService | None = None
    telephony: TelephonyCalls | None = None
    # The public endpoints telephony providers call (events, instructions).
    webhooks: TelephonyWebhooks | None = None
    # The media rendezvous directory when this hub made it (removed at close).
    own_media_dir: str | None = None
    # This worker's share of the campaigns (telephony/campaigns.py), running from open().
    campaigns: CampaignRunner | None = None
    # Asks providers about calls whose events were lost (telephony/reconcile.py).
    reconciler: CallReconciler | None = None

    @classmethod
    async def open(cls, settings: Settings, *, migrate: bool = False) -> Hub:
        keyrings = load_keyrings(settings)
        preload_audio()
        try:
            tracing.configure_from_env()
        except tracing.TracingUnavailable as exc:
            raise StartupError(str(exc)) from None
        store = open_store(settings.database_url)
        await store.connect()
        if migrate:
            applied = await store.migrate()
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
        credential_cache = RowCache(ttl=settings.cache_ttl_seconds, redis_url=settings.redis_url)
        token_cache = RowCache(ttl=TOKEN_CACHE_SECONDS, redis_url=settings.redis_url)
        await credential_cache.start()
        await token_cache.start()
        audit = AuditLog(store)
        audit.start()
        vault = Vault(keyrings, store, audit)
        credentials = CredentialService(store, credential_cache, vault, audit)
        policy_engine, limiter_redis = build_policy_engine(settings)
        # Every provider call becomes a usage row (written in batches off the request path),
        # metrics, and a span when tracing is on.
        usage = UsageRecorder(store)
        observers: list[CallObserver] = [usage, metrics.CallMetrics(), tracing.ProviderCallSpans()]
        llm = LlmService(credentials, policy_engine, observers)
        speech = SpeechService(
            credentials, policy_engine, observers, max_audio_bytes=settings.max_request_bytes
        )
        telephony = TelephonyCalls(
            credentials, policy_engine, observers, store=store, public_url=settings.public_url
        )
        call_events = CallEvents(store, credentials)
        media_dir, own_media_dir = media_directory()
        media = CallMediaStreams(store, media_dir)
        usage.start()
        reconciler = CallReconciler(store, telephony, call_events)
        campaigns = CampaignRunner(store, telephony, reconciler=reconciler)
        telephony_api = TelephonyApi(
            telephony, call_events, media, CampaignApi(store, credentials, settings.public_url, campaigns)
        )
        methods = method_table(
            [
                (credentials_pb2.DESCRIPTOR.services_by_name["CredentialService"], credentials),
                (chat_pb2.DESCRIPTOR.services_by_name["ChatService"], ChatApi(llm)),
                (speech_pb2.DESCRIPTOR.services_by_name["SpeechService"], SpeechApi(speech)),
                (usage_pb2.DESCRIPTOR.services_by_name["UsageService"], UsageApi(store)),
                (identity_pb2.DESCRIPTOR.services_by_name["IdentityService"], IdentityApi()),
                (
                    admin_pb2.DESCRIPTOR.services_by_name["AdminService"],
                    AdminApi(store, token_cache, settings, audit),
                ),
                (
                    telephony_pb2.DESCRIPTOR.services_by_name["TelephonyService"],
                    telephony_api,
                ),
            ]
        )
        dispatcher = Dispatcher(methods, Authenticator(store, token_cache))
        openai = OpenAIAdapter(dispatcher, llm, credentials, speech)
        await campaigns.start()
        await reconciler.start()
        return cls(
            settings,
            store,
            credential_cache,
            token_cache,
            keyrings,
            audit,
            vault,
            credentials,
            llm,
            dispatcher,
            openai,
            policy_engine=policy_engine,
            limiter_redis=limiter_redis,
            usage=usage,
            speech=speech,
            telephony=telephony,
            webhooks=TelephonyWebhooks(
                call_events, CallUrls(settings.public_url) if settings.public_url else None, media_dir
            ),
            own_media_dir=own_media_dir,
            campaigns=campaigns,
            reconciler=reconciler,
        )

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Ready only while the store, the cache (if configured) and the keyring all work."""
        checks = await asyncio.gather(self._check_store(), self._check_cache(), self._check_keyring())
        results = dict(checks)
        return all(v == "ok" for v in results.values()), results

    async def _check_store(self) -> tuple[str, str]:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self.store.ping()
            return "store", "ok"
        except Exception as exc:
            return "store", f"unavailable: {type(exc).__name__}"

    async def _check_cache(self) -> tuple[str, str]:
        if not self.credential_cache.shared:
            return "cache", "ok"
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self.credential_cache.ping()
            return "cache", "ok"
        except Exception as exc:
            return "cache", f"redis unavailable: {type(exc).__name__}"

    async def _check_keyring(self) -> tuple[str, str]:
        # Re-read the file on every probe: a change of mode alone (chmod 644) leaves the
        # mtime untouched, and the probe must still notice the file became unusable.
        keyring = self.keyrings.reload()
        if self.keyrings.last_error:
            return "keyring", f"keyring file unusable: {self.keyrings.last_error}"
        if not keyring.has_usable_key(keyring.primary_id):
            return "keyring", "no usable primary key"
        return "keyring", "ok"

    async def close(self) -> None:
        if self.reconciler is not None:
            await self.reconciler.close()
        if self.campaigns is not None:
            # First: calls being placed still need the provider pools and the store.
            await self.campaigns.close()
        await callers_pools.close_all()
        if self.own_media_dir is not None:
            shutil.rmtree(self.own_media_dir, ignore_errors=True)
        if self.usage is not None:
            # Before the store closes: what is queued is written within the drain time.
            await self.usage.close(self.settings.drain_seconds)
        await self.audit.close()
        await self.credential_cache.close()
        await self.token_cache.close()
        if self.limiter_redis is not None:
            await self.limiter_redis.aclose()
        await self.store.close()
