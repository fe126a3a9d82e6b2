"""Which failures are worth another attempt, and how long to wait before it."""

from __future__ import annotations

import random

from callers.base import CallerError, ProviderTimeout, ProviderUnavailable, RateLimited

# Retryable: the provider may well answer the same request next time (429, 5xx,
# connection refused/reset, timeouts). Never: a rejected key, a bad request, an
# unknown model: repeating those only repeats the error and spends the budget.
RETRYABLE = (RateLimited, ProviderUnavailable, ProviderTimeout)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, RETRYABLE)


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Full jitter (AWS architecture blog): random(0, min(cap, base * 2**attempt)).

    A provider's Retry-After is a floor: waiting less would only meet the same 429.
    """
    delay = random.uniform(0, min(cap, base * 2**attempt))  # noqa: S311 - jitter, not crypto
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def retry_after_of(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, CallerError) else None
