"""VERIFY for Anthropic: GET /v1/models through the real SDK against the local fake."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from callers import pools, registry
from callers.base import ProviderTimeout, ProviderUnavailable, RateLimited
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.secret_fields import PlainSecret

GOOD = "sk-ant-api03-good-0123456789abcdef"
BAD = "sk-ant-api03-bad-0123456789abcdef"


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    yield
    await pools.close_all()


async def test_valid_key_is_ok_and_counts_models() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        result = await registry.verify(
            "anthropic", PlainSecret(api_key=GOOD), {"base_url": fake.url}, timeout=5
        )
    assert result.valid is True
    assert result.reason == "ok"
    assert result.detail == {"models": "3"}
    [request] = fake.requests
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.headers["Authorization"] == f"Bearer {GOOD}"
    assert request.headers["anthropic-version"] == "2026-10-21"


async def test_rejected_key_is_an_answer_not_an_error() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        result = await registry.verify(
            "anthropic", PlainSecret(api_key=BAD), {"base_url": fake.url}, timeout=5
        )
    assert result.valid is False
    assert result.reason == "provider rejected the key (401): invalid x-api-key"


async def test_forbidden_is_a_rejection() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.force_status = 403
        result = await registry.verify(
            "anthropic", PlainSecret(api_key=GOOD), {"base_url": fake.url}, timeout=5
        )
    assert result.valid is False
    assert result.reason.startswith("provider rejected the key (403): Your API key does not have permission")


async def test_throttled_or_failing_provider_cannot_tell() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.force_status, fake.retry_after = 429, "3"
        with pytest.raises(RateLimited) as limited:
            await registry.verify("anthropic", PlainSecret(api_key=GOOD), {"base_url": fake.url}, timeout=5)
        fake.force_status, fake.retry_after = 529, None
        with pytest.raises(ProviderUnavailable, match="Overloaded"):
            await registry.verify("anthropic", PlainSecret(api_key=GOOD), {"base_url": fake.url}, timeout=5)
    assert limited.value.retry_after == 3.0


async def test_slow_provider_times_out() -> None:
    async with FakeAnthropic(valid_keys={GOOD}) as fake:
        fake.delay = 5.0
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await registry.verify("anthropic", PlainSecret(api_key=GOOD), {"base_url": fake.url}, timeout=0.3)
        assert time.monotonic() - started < 1.5
