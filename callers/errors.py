"""The errors every caller raises, whatever SDK or wire protocol sits underneath.

The hub maps these classes onto its own API errors (and decides what to retry), so
a caller's job is only to classify what the provider said. Messages may quote the
provider's text; secrets are redacted centrally by the hub, but callers still never
put a credential value into a message themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class CallerError(Exception):
    """Base of all caller errors.

    `retry_after` is how long the provider asked us to wait (seconds), when it said so;
    `provider_status` is the HTTP status the provider answered with, when there was one.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, provider_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.provider_status = provider_status


class AuthenticationFailed(CallerError):
    """The provider does not accept the key (invalid, revoked or expired)."""


class PermissionDenied(CallerError):
    """The key is valid but may not do this (scope, region, model access)."""


class RateLimited(CallerError):
    """The provider throttled us; `retry_after` carries its Retry-After when given."""


class InvalidRequest(CallerError):
    """The provider refused the request itself; the message is the provider's."""


class NotFound(CallerError):
    """The model, deployment or resource named in the request does not exist."""


class ProviderUnavailable(CallerError):
    """The provider failed (5xx) or could not be reached (refused, reset, DNS)."""


class ProviderTimeout(CallerError):
    """No answer within the caller's timeout, or the provider reported a timeout."""


class WebhookRejected(CallerError):
    """A request claiming to come from the provider is not signed as the provider signs
    it (missing, forged or stale signature). The hub answers 403 and stores nothing;
    the message says what failed, never the expected signature."""


class MissingExtra(CallerError):
    """The optional SDK a provider needs is not installed in this deployment."""

    def __init__(self, extra: str, detail: str = "") -> None:
        because = f" ({detail})" if detail else ""
        super().__init__(
            f"the SDK for provider {extra!r} is not installed{because}; "
            f"install it with: pip install 'integration-hub[{extra}]'"
        )
        self.extra = extra


class NotSupported(CallerError):
    """This provider does not offer, or the hub does not yet implement, a capability."""

    def __init__(self, provider: str, capability: str) -> None:
        super().__init__(f"provider {provider!r} does not support capability {capability!r}")
        self.provider = provider
        self.capability = capability


def parse_retry_after(header: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: either delta-seconds or an HTTP-date.

    Returns None when the header is absent or unreadable: a malformed hint is treated
    as no hint rather than an error, since the status code already says "throttled".
    """
    if header is None or not header.strip():
        return None
    text = header.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        # RFC 9110 HTTP-dates are always GMT; parsedate gives naive for "-0000".
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def error_from_http_status(status: int, message: str, retry_after_header: str | None) -> CallerError:
    """Classify a provider's HTTP error answer into a caller error.

    The status decides first, because it is the one signal every provider sends
    consistently; error codes and message wording differ per vendor and change over
    time. Callers that know a vendor's body format refine the result themselves.
    Retry-After is kept on every class: providers send it with 503 as well as 429.
    """
    retry_after = parse_retry_after(retry_after_header)
    kind: type[CallerError]
    if status == 401:
        kind = AuthenticationFailed
    elif status == 403:
        kind = PermissionDenied
    elif status == 404:
        kind = NotFound
    elif status in (408, 504):
        # A timeout reported by the provider (or its gateway) is the same situation
        # for the hub as our own timeout firing: the outcome is unknown, retry later.
        kind = ProviderTimeout
    elif status == 429:
        kind = RateLimited
    elif 400 <= status < 500:
        kind = InvalidRequest
    else:
        # 5xx, and anything that is not an HTTP error status at all (an unexpected
        # 1xx/2xx/3xx where an error was expected): the provider misbehaved.
        kind = ProviderUnavailable
    return kind(message, retry_after=retry_after, provider_status=status)
