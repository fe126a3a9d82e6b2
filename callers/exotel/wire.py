"""Exotel's Voice v1 REST API on the wire, over the pooled aiohttp session.

Why no SDK: Exotel publishes no maintained Python SDK (the community ones are thin
`requests` wrappers that hold the token for their whole life and block the event loop).
Speaking the REST API directly keeps the token in one request's Authorization header,
bounds every request by the call's timeout (connect included), and reuses the pooled
session, which refuses redirects.

The wire (sources: developer.exotel.com/docs/voice-v1/api-reference/connect-to-flow,
.../call-details, .../status-callback, /docs/references/error-codes and
/docs/references/authentication; docs.exotel.com/exotel-agentstream/connect-voice-ai-api
as written down in github.com/exotel/Agent-Stream docs/openapi/exotel-connect-voice-ai.yaml):

- root: ``https://<subdomain>`` (api.exotel.com Singapore, api.in.exotel.com Mumbai), or
  the ``api_base_url`` option;
- auth: HTTP Basic, ``<api_key>:<api_token>`` (the key is an option, the token the secret);
- paths take a ``.json`` suffix for JSON answers (without it Exotel answers XML):
  POST ``/v1/Accounts/<sid>/Calls/connect.json`` (form fields), GET
  ``/v1/Accounts/<sid>/Calls/<CallSid>.json?details=true``, GET
  ``/v1/Accounts/<sid>/Calls.json?PageSize=1``;
- answers ``{"Call": {"Sid", "Status", "Duration", "AnsweredBy", ...}}`` (the newer
  AgentStream pages print the same object with lower-case keys: both are read);
- errors ``{"RestException": {"Status", "Message", "Code"}}`` with the HTTP status: 401
  bad key/token or account SID, 402 plan or balance, 403 forbidden, 404 unknown
  resource, 429 throttled (200 requests a minute per account), 5xx;
- times are ``YYYY-MM-DD HH:mm:ss`` without a zone: Exotel's platform time, India
  Standard Time (UTC+05:30), which is how they are read here.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import orjson
from yarl import URL

from callers import pools
from callers.base import (
    CallerError,
    InvalidRequest,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnavailable,
    SecretFields,
    error_from_http_status,
)
from callers.exotel import SPEC
from callers.timeouts import connect_timeout
from callers.types import CallStatus

TOKEN_FIELD = "api_token"  # noqa: S105 - the secret's field name, not a value
EXOTEL_TIME = timezone(timedelta(hours=5, minutes=30), "IST")
_MESSAGE_CHARS = 600
_QUOTED_BODY_CHARS = 300

# Exotel's status words (Call details, StatusCallback), normalized.
STATUSES: dict[str, CallStatus] = {
    "queued": CallStatus.QUEUED,
    "ringing": CallStatus.RINGING,
    "in-progress": CallStatus.IN_PROGRESS,
    "completed": CallStatus.COMPLETED,
    "busy": CallStatus.BUSY,
    "no-answer": CallStatus.NO_ANSWER,
    "failed": CallStatus.FAILED,
    "canceled": CallStatus.CANCELED,
    "cancelled": CallStatus.CANCELED,
}


def status_of(raw: str) -> CallStatus | None:
    return STATUSES.get(raw.strip().lower())


@dataclass(frozen=True, slots=True)
class Target:
    """The API root of one credential; never holds the token."""

    root: URL
    upstream: str  # the pool key: scheme://host[:port]
    host: str
    account_sid: str

    def url(self, *parts: str, query: Mapping[str, str] | None = None) -> URL:
        url = self.root / "v1" / "Accounts" / self.account_sid
        for part in parts:
            url = url / part
        return url.with_query(dict(query)) if query else url


def option(options: Mapping[str, str], name: str) -> str:
    value = SPEC.with_defaults(options).get(name, "")
    return value.strip() if isinstance(value, str) else ""


def target(options: Mapping[str, str]) -> Target:
    account_sid = option(options, "account_sid")
    if not account_sid:
        raise InvalidRequest("options.account_sid is required")
    raw = option(options, "api_base_url") or f"https://{option(options, 'subdomain')}"
    try:
        root = URL(raw.rstrip("/"))
    except ValueError:
        root = URL()
    if root.scheme not in ("http", "https") or not root.host:
        raise InvalidRequest("options.api_base_url must be an http(s) URL")
    return Target(root=root, upstream=str(root.origin()), host=root.host, account_sid=account_sid)


def flow_url(options: Mapping[str, str], app_id: str) -> str:
    """The Url of an App Bazaar flow, as Calls/connect takes it.

    The dashboard of a Mumbai (api.in.exotel.com) account is my.in.exotel.com, and its
    flows live there; the others are on my.exotel.com.
    """
    host = "my.in.exotel.com" if option(options, "subdomain") == "api.in.exotel.com" else "my.exotel.com"
    return f"http://{host}/{option(options, 'account_sid')}/exoml/start_voice/{app_id}"


def auth_headers(secret: SecretFields, options: Mapping[str, str]) -> dict[str, str]:
    """Basic auth, the token read from the secret at the moment the request goes out."""
    api_key = option(options, "api_key")
    if not api_key:
        raise InvalidRequest("options.api_key is required")
    pair = f"{api_key}:{secret.reveal(TOKEN_FIELD)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii"), "Accept": "application/json"}


def client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds, sock_connect=min(seconds, connect_timeout()))


# --- answers ----------------------------------------------------------------------


def field(data: Mapping[str, Any], name: str) -> Any:
    """A field by Exotel's name, or the lower-case spelling of the newer pages."""
    if name in data:
        return data[name]
    return data.get(name.lower())


def call_object(data: object, host: str) -> Mapping[str, Any]:
    """The `Call` object of an answer."""
    call = field(data, "Call") if isinstance(data, dict) else None
    if not isinstance(call, dict) or not isinstance(field(call, "Sid"), str) or not field(call, "Sid"):
        raise ProviderUnavailable(f"unexpected answer from {host}: no Call.Sid")
    return call


def text(value: object) -> str:
    """A field's value as Exotel means it: null and absent are empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def seconds(value: object) -> float | None:
    """A duration field ("17", 17, null) in seconds."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        return None
    return number if number is not None and number >= 0 else None


def parse_time(value: object) -> datetime | None:
    """``YYYY-MM-DD HH:mm:ss`` (Exotel's time, IST) as an aware datetime."""
    if not isinstance(value, str) or not value.strip():
        return None
    raw = value.strip()
    for layout in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(raw, layout).replace(tzinfo=EXOTEL_TIME)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=EXOTEL_TIME)


# --- errors -----------------------------------------------------------------------


def _error_parts(body: bytes) -> tuple[str, str]:
    """(message, code) of Exotel's RestException, or the body quoted, shortened."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        quoted = body.decode("utf-8", "replace").strip()
        return quoted[:_QUOTED_BODY_CHARS] or "(empty body)", ""
    found = field(data, "RestException") if isinstance(data, dict) else None
    if isinstance(found, dict):
        message = text(field(found, "Message")) or orjson.dumps(found).decode()
        return message[:_MESSAGE_CHARS], text(field(found, "Code"))
    return orjson.dumps(data).decode()[:_QUOTED_BODY_CHARS], ""


def http_error(status: int, body: bytes, headers: Mapping[str, str], host: str) -> CallerError:
    """Classify an error answer by its status; the message is Exotel's, with its code."""
    message, code = _error_parts(body)
    described = f"Exotel: {message}" + (f" (code {code})" if code else "")
    if status == 402:
        # The plan or the balance: retrying cannot succeed until someone pays.
        return PermissionDenied(described, provider_status=status)
    return error_from_http_status(status, described, headers.get("Retry-After"))


def connection_error(host: str, exc: aiohttp.ClientError) -> CallerError:
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return ProviderUnavailable(f"{host} closed the connection mid-answer ({type(exc).__name__})")
    return ProviderUnavailable(f"could not reach {host} ({type(exc).__name__})")


# --- requests ---------------------------------------------------------------------


async def request(
    method: str,
    where: Target,
    url: URL,
    secret: SecretFields,
    options: Mapping[str, str],
    *,
    timeout: float,
    form: list[tuple[str, str]] | None = None,
) -> Any:
    """One REST call; the parsed JSON answer. Errors are the callers.errors classes."""
    headers = auth_headers(secret, options)
    session = pools.aiohttp_session(where.upstream)
    body: aiohttp.FormData | None = None
    if form is not None:
        body = aiohttp.FormData(form, charset="utf-8")  # application/x-www-form-urlencoded
    # Failures are raised outside the `except` blocks, so that no exception chains back
    # (__context__) to an aiohttp error whose request_info holds the Authorization header.
    failure: CallerError | None = None
    try:
        async with session.request(
            method, url, data=body, headers=headers, timeout=client_timeout(timeout), allow_redirects=False
        ) as response:
            payload = await response.read()
            status, answer_headers = response.status, response.headers
    except TimeoutError:
        failure = ProviderTimeout(f"{where.host} did not answer within {timeout:g} s")
    except aiohttp.ClientError as exc:
        failure = connection_error(where.host, exc)
    if failure is not None:
        raise failure
    if not 200 <= status < 300:
        raise http_error(status, payload, answer_headers, where.host)
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProviderUnavailable(f"unexpected answer from {where.host}: the body is not JSON") from None


# --- the media websocket URL --------------------------------------------------------

# What Exotel takes (developer.exotel.com/docs/agentstream/stream-voicebot-applet, and the
# Connect Voice AI API): up to 3 custom parameters as the websocket URL's query (256
# characters at most), handed back in the stream's start message; `sample-rate` asks for
# 8000, 16000 or 24000 Hz audio; a StreamUrl is at most 600 characters.
MAX_CUSTOM_PARAMETERS = 3
MAX_CUSTOM_QUERY_CHARS = 256
MAX_STREAM_URL_CHARS = 600
SAMPLE_RATE_PARAMETER = "sample-rate"


def custom_parameters(stream_parameters: Mapping[str, str], metadata: Mapping[str, str]) -> dict[str, str]:
    """The stream's custom parameters: the action's, then the call's metadata."""
    merged = dict(stream_parameters)
    for name, value in metadata.items():
        if name in merged and merged[name] != value:
            raise InvalidRequest(f"metadata {name!r} conflicts with the stream parameter of that name")
        merged[name] = value
    if SAMPLE_RATE_PARAMETER in merged:
        raise InvalidRequest(
            f"{SAMPLE_RATE_PARAMETER!r} is Exotel's own stream parameter: set options.stream_sample_rate"
        )
    if len(merged) > MAX_CUSTOM_PARAMETERS:
        raise InvalidRequest(
            f"Exotel passes at most {MAX_CUSTOM_PARAMETERS} custom parameters to a media stream; "
            f"stream_parameters and metadata hold {len(merged)} ({', '.join(sorted(merged))})"
        )
    query = URL.build(query=merged).raw_query_string
    if len(query) > MAX_CUSTOM_QUERY_CHARS:
        raise InvalidRequest(
            f"Exotel's custom stream parameters are at most {MAX_CUSTOM_QUERY_CHARS} characters "
            f"once URL-encoded; these are {len(query)}"
        )
    return merged


def stream_url(options: Mapping[str, str], media_url: str, parameters: Mapping[str, str]) -> str:
    """The websocket URL Exotel connects to: the hub's media URL with the custom
    parameters and the sample rate in its query."""
    try:
        url = URL(media_url)
    except ValueError:
        url = URL()
    if url.scheme not in ("ws", "wss") or not url.host:
        raise InvalidRequest("action.media_url must be a ws:// or wss:// URL")
    extra = list(parameters.items())
    rate = option(options, "stream_sample_rate")
    if rate and rate != "8000":
        extra.append((SAMPLE_RATE_PARAMETER, rate))
    return str(url.extend_query(extra)) if extra else str(url)
