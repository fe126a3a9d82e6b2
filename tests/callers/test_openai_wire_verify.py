"""VERIFY for the OpenAI-wire vendors, through the real openai SDK against a local fake."""

from __future__ import annotations

import time

import pytest

from callers import registry
from callers.base import ProviderTimeout, ProviderUnavailable, RateLimited
from callers.spec import InvalidCredentialField
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.secret_fields import PlainSecret

GOOD = "sk-good-0123456789abcdef"
BAD = "sk-bad-0123456789abcdef"


async def test_valid_key_is_ok_and_counts_models() -> None:
    async with FakeOpenAI(valid_keys={GOOD}) as fake:
        result = await registry.verify(
            "openai", PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, timeout=5
        )
    assert result.valid is True
    assert result.reason == "ok"
    assert result.detail == {"models": str(len(fake.models))}
    [request] = fake.requests
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.headers["Authorization"] == f"Bearer {GOOD}"
    assert "OpenAI-Organization" not in request.headers
    assert "OpenAI-Project" not in request.headers


async def test_organization_and_project_are_sent_as_openai_headers() -> None:
    async with FakeOpenAI(valid_keys={GOOD}) as fake:
        options = {"base_url": fake.base_url, "organization": "org-abc", "project": "proj_xyz"}
        result = await registry.verify("openai", PlainSecret(api_key=GOOD), options, timeout=5)
    assert result.valid
    headers = fake.requests[0].headers
    assert headers["OpenAI-Organization"] == "org-abc"
    assert headers["OpenAI-Project"] == "proj_xyz"


async def test_rejected_key_is_an_answer_not_an_error() -> None:
    async with FakeOpenAI(valid_keys={GOOD}) as fake:
        result = await registry.verify(
            "openai", PlainSecret(api_key=BAD), {"base_url": fake.base_url}, timeout=5
        )
    assert result.valid is False
    assert result.reason.startswith("provider rejected the key (401): Incorrect API key provided: sk-")
    assert BAD not in result.reason  # the provider masks it, and we add nothing


async def test_forbidden_is_a_rejection_with_its_status() -> None:
    async with FakeOpenAI(valid_keys={GOOD}) as fake:
        fake.force_status = 403
        result = await registry.verify(
            "openai", PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, timeout=5
        )
    assert result.valid is False
    assert result.reason == "provider rejected the key (403): forced status 403"


async def test_rate_limited_raises_with_retry_after() -> None:
    async with FakeOpenAI(valid_keys={GOOD}) as fake:
        fake.force_status, fake.retry_after = 429, "7"
        with pytest.raises(RateLimited) as caught:
            await registry.verify("openai", PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, timeout=5)
    assert caught.value.retry_after == 7.0
    assert caught.value.provider_status == 429
    assert caught.value.message.startswith("Rate limit reached for gpt-4o-mini")
    assert len(fake.requests) == 1  # max_retries=0: the hub, not the SDK, decides on retries


async def test_server_error_raises_provider_unavailable() -> None:
    async with FakeOpenAI(valid_keys={GOOD}) as fake:
        fake.force_status = 500
        with pytest.raises(ProviderUnavailable) as caught:
            await registry.verify("openai", PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, timeout=5)
    assert caught.value.provider_status == 500
    assert "The server had an error" in caught.value.message
    # The SDK error (it holds the outgoing request) is not shown as the cause.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True
    assert len(fake.requests) == 1


async def test_slow_provider_raises_timeout_within_bound() -> None:
    async with FakeOpenAI(valid_keys={GOOD}) as fake:
        fake.delay = 3.0
        started = time.monotonic()
        with pytest.raises(ProviderTimeout, match="did not answer within the timeout"):
            await registry.verify(
                "openai", PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, timeout=0.3
            )
        assert time.monotonic() - started < 2.0


async def test_connection_refused_raises_provider_unavailable(refused_base_url: str) -> None:
    with pytest.raises(ProviderUnavailable, match=r"could not reach 127\.0\.0\.1") as caught:
        await registry.verify("openai", PlainSecret(api_key=GOOD), {"base_url": refused_base_url}, timeout=5)
    assert caught.value.provider_status is None


async def test_hub_environment_never_reaches_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # Keys and settings come only from the vault, whatever the hub's environment holds.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-environment")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-from-environment")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_from_environment")
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "Authorization: Bearer sk-from-environment")
    async with FakeOpenAI(valid_keys={GOOD}) as fake:
        result = await registry.verify(
            "openai", PlainSecret(api_key=GOOD), {"base_url": fake.base_url}, timeout=5
        )
        keyless = await registry.verify(
            "openai_compatible", PlainSecret(), {"base_url": fake.base_url}, timeout=5
        )
    assert result.valid
    assert keyless.valid is False  # sent without a key, so this server said 401
    with_key, without_key = (r.headers for r in fake.requests)
    assert with_key["Authorization"] == f"Bearer {GOOD}"
    assert "Authorization" not in without_key
    for headers in (with_key, without_key):
        assert "OpenAI-Organization" not in headers
        assert "OpenAI-Project" not in headers


async def test_openrouter_sends_attribution_headers() -> None:
    async with FakeOpenAI(valid_keys={"sk-or-v1-good"}) as fake:
        options = {
            "base_url": fake.base_url,
            "http_referer": "https://app.example.com",
            "app_title": "Example",
        }
        result = await registry.verify("openrouter", PlainSecret(api_key="sk-or-v1-good"), options, timeout=5)
    assert result.valid
    headers = fake.requests[0].headers
    assert headers["Authorization"] == "Bearer sk-or-v1-good"
    assert headers["HTTP-Referer"] == "https://app.example.com"
    assert headers["X-Title"] == "Example"


async def test_openrouter_rejection() -> None:
    async with FakeOpenAI(valid_keys={"sk-or-v1-good"}) as fake:
        result = await registry.verify(
            "openrouter", PlainSecret(api_key="sk-or-v1-bad"), {"base_url": fake.base_url}, timeout=5
        )
    assert result.valid is False
    assert "(401)" in result.reason
    assert "HTTP-Referer" not in fake.requests[0].headers


async def test_openai_compatible_with_key_sends_bearer() -> None:
    async with FakeOpenAI(valid_keys={"vllm-token"}) as fake:
        result = await registry.verify(
            "openai_compatible", PlainSecret(api_key="vllm-token"), {"base_url": fake.base_url}, timeout=5
        )
    assert result.valid
    assert fake.requests[0].headers["Authorization"] == "Bearer vllm-token"


async def test_openai_compatible_without_key_sends_no_authorization() -> None:
    async with FakeOpenAI(valid_keys=None) as fake:
        result = await registry.verify(
            "openai_compatible", PlainSecret(), {"base_url": fake.base_url}, timeout=5
        )
    assert result.valid
    assert result.detail == {"models": "3"}
    assert "Authorization" not in fake.requests[0].headers


async def test_azure_valid_key_uses_api_key_header_and_api_version() -> None:
    async with FakeOpenAI(valid_keys={"azure-key-1"}) as fake:
        result = await registry.verify(
            "azure_openai", PlainSecret(api_key="azure-key-1"), {"endpoint": fake.azure_endpoint}, timeout=5
        )
    assert result.valid
    assert result.detail == {"models": "3"}
    [request] = fake.requests
    assert request.path == "/openai/models"
    assert request.query == {"api-version": "2024-10-21"}
    assert request.headers["api-key"] == "azure-key-1"
    assert "Authorization" not in request.headers


async def test_azure_explicit_api_version_and_rejection() -> None:
    async with FakeOpenAI(valid_keys={"azure-key-1"}) as fake:
        options = {"endpoint": fake.azure_endpoint, "api_version": "2025-01-01-preview"}
        result = await registry.verify("azure_openai", PlainSecret(api_key="wrong"), options, timeout=5)
    assert result.valid is False
    assert result.reason.startswith(
        "provider rejected the key (401): Access denied due to invalid subscription key"
    )
    assert fake.requests[0].query == {"api-version": "2025-01-01-preview"}


async def test_azure_rate_limited() -> None:
    async with FakeOpenAI(valid_keys={"azure-key-1"}) as fake:
        fake.force_status, fake.retry_after = 429, "2"
        with pytest.raises(RateLimited) as caught:
            await registry.verify(
                "azure_openai",
                PlainSecret(api_key="azure-key-1"),
                {"endpoint": fake.azure_endpoint},
                timeout=5,
            )
    assert caught.value.retry_after == 2.0


async def test_missing_required_location_is_a_field_error_not_a_guess() -> None:
    with pytest.raises(InvalidCredentialField, match=r"^options\.base_url: required$"):
        await registry.verify("openai_compatible", PlainSecret(), {}, timeout=1)
    with pytest.raises(InvalidCredentialField, match=r"^options\.endpoint: required$"):
        await registry.verify("azure_openai", PlainSecret(api_key="k"), {}, timeout=1)
