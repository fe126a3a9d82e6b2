"""Classification of provider HTTP errors and Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime

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
    error_from_http_status,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InvalidRequest),
        (401, AuthenticationFailed),
        (403, PermissionDenied),
        (404, NotFound),
        (408, ProviderTimeout),
        (409, InvalidRequest),
        (422, InvalidRequest),
        (429, RateLimited),
        (500, ProviderUnavailable),
        (502, ProviderUnavailable),
        (503, ProviderUnavailable),
        (504, ProviderTimeout),
        (302, ProviderUnavailable),
    ],
)
def test_status_decides_the_class(status: int, kind: type[CallerError]) -> None:
    error = error_from_http_status(status, "provider said no", None)
    assert type(error) is kind
    assert error.message == str(error) == "provider said no"
    assert error.provider_status == status
    assert error.retry_after is None


def test_retry_after_is_kept_on_any_class() -> None:
    assert error_from_http_status(429, "slow down", "12").retry_after == 12.0
    assert error_from_http_status(503, "overloaded", "3").retry_after == 3.0


def test_retry_after_seconds() -> None:
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(" 30 ") == 30.0
    assert parse_retry_after("1.5") == 1.5


def test_retry_after_http_date() -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:45 GMT", now=now) == 45.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now=now) == 0.0  # already past


@pytest.mark.parametrize("header", [None, "", "soon", "-"])
def test_unreadable_retry_after_is_no_hint(header: str | None) -> None:
    assert parse_retry_after(header) is None


def test_negative_seconds_clamp_to_zero() -> None:
    assert parse_retry_after("-5") == 0.0
