"""Twilio's REST errors as caller errors.

Twilio answers an error with JSON ``{"code": 21211, "message": "Invalid 'To' Phone
Number: ...", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}``
(https://www.twilio.com/docs/usage/twilios-response#response-formats-exceptions; newer
APIs answer RFC 9457 problems ``{type, title, status, code, detail}``, which the SDK
raises as TwilioServiceException). The HTTP status decides first (callers.errors);
Twilio's error code refines it where one status means several things
(https://www.twilio.com/docs/api/errors):

- 20003 (401: wrong Account SID / Auth Token / API key, or a Standard API key on
  /Accounts) -> AuthenticationFailed; 20005 (account not active) -> PermissionDenied;
- 21211, 21214, 21217, 21401, 21407 (invalid or unreachable 'To'), 21212, 21210, 21213
  ('From' invalid, unverified, missing), 21201, 21205 (no 'To', no instructions), 21220
  (the call is not in a state that allows the change) -> InvalidRequest;
- 21215, 21216, 21219 (geo permissions, a blocked destination, a trial account's
  unverified number) -> PermissionDenied: the account may not call there;
- 20404 -> NotFound; 20429 or HTTP 429 -> RateLimited (Retry-After when sent);
- 5xx, and 20500/20503 -> ProviderUnavailable.

Messages quote Twilio's message and code, with any secret value scrubbed out should it
ever be echoed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from twilio.base.exceptions import TwilioException, TwilioRestException  # type: ignore[import-untyped]

from callers.base import (
    AuthenticationFailed,
    CallerError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    error_from_http_status,
    parse_retry_after,
)
from callers.twilio.client import PooledHttpClient

_QUOTED_CHARS = 400

AUTHENTICATION = frozenset({20003})
PERMISSION = frozenset({20005, 20008, 21215, 21216, 21219})
INVALID = frozenset({21201, 21205, 21210, 21211, 21212, 21213, 21214, 21217, 21220, 21401, 21407})
NOT_FOUND = frozenset({20404})
RATE = frozenset({20429})
UNAVAILABLE = frozenset({20500, 20503})
# The call is not in a state that allows the change (e.g. it has ended).
INVALID_CALL_STATE = 21220


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    for value in secrets:
        if value and len(value) >= 4 and value in text:
            text = text.replace(value, "[redacted]")
    return text


def _parts(body: str) -> tuple[int | None, str]:
    """(code, message) from a Twilio error body, or the body quoted, shortened."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.strip()
        return None, text[:_QUOTED_CHARS] or "(empty body)"
    if not isinstance(data, dict):
        return None, body.strip()[:_QUOTED_CHARS]
    code = data.get("code")
    message = data.get("message") or data.get("detail") or data.get("title")
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    text = str(message) if message else json.dumps(data)[:_QUOTED_CHARS]
    detail = data.get("detail")
    if detail and message and detail != message:
        text = f"{text}: {detail}"
    return (code if isinstance(code, int) else None), text[:_QUOTED_CHARS]


def http_error(
    status: int, body: str, retry_after_header: str | None, *, secrets: Iterable[str | None] = ()
) -> CallerError:
    """Classify one Twilio error answer."""
    code, message = _parts(body)
    text = scrub(f"Twilio: {message}" + (f" (error {code})" if code else ""), secrets)
    retry_after = parse_retry_after(retry_after_header)
    kind: type[CallerError] | None = None
    if code in AUTHENTICATION:
        kind = AuthenticationFailed
    elif code in PERMISSION:
        kind = PermissionDenied
    elif code in INVALID:
        kind = InvalidRequest
    elif code in NOT_FOUND:
        kind = NotFound
    elif code in RATE:
        kind = RateLimited
    elif code in UNAVAILABLE:
        kind = ProviderUnavailable
    if kind is not None and status != 429 and not status >= 500:
        return kind(text, retry_after=retry_after, provider_status=status)
    return error_from_http_status(status, text, retry_after_header)


def error_code(body: str) -> int | None:
    """Twilio's error code in an error body, if it has one."""
    return _parts(body)[0]


def from_sdk(
    exc: BaseException, http: PooledHttpClient, *, secrets: Iterable[str | None] = ()
) -> CallerError:
    """What the SDK raised, classified from the answer itself (kept by the HTTP client).

    An error answer is a TwilioRestException (or TwilioServiceException); a 2xx answer
    the SDK could not read (not JSON, fields missing) is ProviderUnavailable."""
    if http.last_status is not None and http.last_status >= 300:
        retry_after = next((v for k, v in http.last_headers.items() if k.lower() == "retry-after"), None)
        return http_error(http.last_status, http.last_body, retry_after, secrets=secrets)
    if isinstance(exc, TwilioRestException):
        status = int(getattr(exc, "status", 0) or 0)
        return error_from_http_status(status, scrub(f"Twilio: {getattr(exc, 'msg', '')}", secrets), None)
    return ProviderUnavailable(
        scrub(f"unexpected answer from {http.where}: {type(exc).__name__}", secrets),
        provider_status=http.last_status,
    )


# What from_sdk classifies: the SDK's own errors, and its parsing of a malformed answer.
SDK_ERRORS: tuple[type[BaseException], ...] = (TwilioException, ValueError, KeyError, TypeError)
