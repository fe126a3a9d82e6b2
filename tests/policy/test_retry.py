"""What is retried, and how long the hub waits before the next attempt."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from callers.base import (
    AuthenticationFailed,
    CallerError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from integration_hub.policy.retry import backoff_delay, is_retryable, retry_after_of

SAMPLES = 2000


@pytest.fixture(autouse=True)
def seeded() -> Iterator[None]:
    """Jitter comes from the module-level `random`: seed it, and put its state back after."""
    state = random.getstate()
    random.seed(20240601)
    yield
    random.setstate(state)


@pytest.mark.parametrize("attempt", [0, 1, 2, 3])
def test_full_jitter_spans_zero_to_the_exponential_ceiling(attempt: int) -> None:
    base, cap = 0.2, 5.0
    ceiling = min(cap, base * 2**attempt)
    delays = [backoff_delay(attempt, base, cap) for _ in range(SAMPLES)]
    assert all(0 <= d <= ceiling for d in delays)
    # Full jitter, not "ceiling plus a little": the whole range is used.
    assert min(delays) < 0.05 * ceiling
    assert max(delays) > 0.95 * ceiling
    assert 0.4 * ceiling < sum(delays) / len(delays) < 0.6 * ceiling


def test_the_ceiling_is_capped() -> None:
    delays = [backoff_delay(30, 0.2, 5.0) for _ in range(SAMPLES)]
    assert max(delays) <= 5.0
    assert max(delays) > 4.5


def test_retry_after_is_a_floor() -> None:
    assert all(backoff_delay(0, 0.2, 5.0, retry_after=3.0) == 3.0 for _ in range(200))
    # Below the jitter's range it changes nothing above it.
    delays = [backoff_delay(3, 0.2, 5.0, retry_after=0.5) for _ in range(SAMPLES)]
    assert min(delays) == 0.5
    assert max(delays) > 1.5


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (RateLimited("429"), True),
        (ProviderUnavailable("503"), True),
        (ProviderTimeout("slow"), True),
        (InvalidRequest("400"), False),
        (AuthenticationFailed("401"), False),
        (PermissionDenied("403"), False),
        (NotFound("404"), False),
        (ValueError("not a provider error"), False),
    ],
)
def test_only_failures_that_may_pass_next_time_are_retried(error: Exception, retryable: bool) -> None:
    assert is_retryable(error) is retryable


def test_retry_after_is_read_from_caller_errors_only() -> None:
    assert retry_after_of(RateLimited("429", retry_after=7.0)) == 7.0
    assert retry_after_of(CallerError("x")) is None
    assert retry_after_of(ValueError("x")) is None
