"""The `twilio` SDK client of one call, over the pooled aiohttp session.

The SDK (twilio 9.13) is used on its async path (`calls.create_async`, `fetch_async`,
`update_async`): it builds the Calls resource's requests (paths, form fields,
`StatusCallbackEvent` repeated once per event) and parses its answers. What it is
given, and why:

- an HTTP client of our own (`PooledHttpClient`, an `twilio.http.AsyncHttpClient`)
  instead of its AsyncTwilioHttpClient, which opens its own aiohttp ClientSession (with
  a cookie jar, the environment's proxies and redirects allowed per its flag) and
  retries with aiohttp_retry when asked. Ours sends every request on the loop's pooled
  session for the API's origin (callers.pools: no cookies, no environment, redirects
  refused), bounds it with the call's deadline (connect included, callers.timeouts),
  never retries (the hub owns retries), never logs (the SDK's clients log each request's
  headers), and keeps the last answer's status, headers and body, which the SDK's
  TwilioRestException does not carry (Retry-After above all);
- the key of this call only: `twilio.rest.Client` is built per call with the username
  and password (Account SID + Auth Token, or API key SID + secret) and dropped after
  it. What outlives the call is the pooled session, which holds connections, no key;
- no environment: `environment=_NO_ENVIRONMENT`, a mapping that answers nothing, so the
  SDK reads none of TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_EDGE, TWILIO_REGION
  (an empty dict would not do: the SDK falls back to os.environ on a falsy mapping);
- the API root: the Api domain's `base_url` is set to options.api_base_url (default
  https://api.twilio.com), so the SDK itself builds URLs on it, and the HTTP client
  refuses any URL outside that origin, so the key only ever goes where it was configured.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from twilio.http import AsyncHttpClient  # type: ignore[import-untyped]
from twilio.http.response import Response  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]

from callers import pools
from callers.base import InvalidRequest, ProviderTimeout, ProviderUnavailable, SecretFields
from callers.timeouts import connect_timeout
from callers.twilio import SPEC

# Twilio SIDs: a two-letter type prefix and 32 hex digits.
CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")


class _NoEnvironment(dict[str, str]):
    """An environment that is truthy (so the SDK does not fall back to os.environ) and
    holds nothing."""

    def __bool__(self) -> bool:
        return True


_NO_ENVIRONMENT = _NoEnvironment()


def api_root(options: Mapping[str, str]) -> str:
    """scheme://host[:port] of the REST API; a path, query or userinfo is refused."""
    raw = SPEC.with_defaults(options)["api_base_url"].strip().rstrip("/")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        parts, port = urlsplit(""), None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise InvalidRequest("options.api_base_url must be an http(s) origin such as https://api.twilio.com")
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:  # an IPv6 literal
        netloc = f"[{parts.hostname}]" + ("" if port is None else f":{port}")
    return f"{parts.scheme}://{netloc}"


def host(options: Mapping[str, str]) -> str:
    """The API's host, for messages."""
    try:
        return urlsplit(api_root(options)).hostname or "Twilio"
    except InvalidRequest:
        return "Twilio"


def account_sid(options: Mapping[str, str]) -> str:
    sid = options.get("account_sid", "")
    if not re.fullmatch(r"AC[0-9a-fA-F]{32}", sid):
        raise InvalidRequest("options.account_sid must be a Twilio Account SID: AC followed by 32 hex digits")
    return sid


def uses_api_key(secret: SecretFields, options: Mapping[str, str]) -> bool:
    return bool(options.get("api_key_sid")) and bool(secret.get("api_key_secret"))


def check_call_sid(sid: str) -> str:
    """A Call SID, before it is spliced into a request path."""
    if not CALL_SID.fullmatch(sid):
        raise InvalidRequest("provider_call_id must be a Twilio Call SID: CA followed by 32 hex digits")
    return sid


class PooledHttpClient(AsyncHttpClient):  # type: ignore[misc]
    """The SDK's HTTP client for one call: the pooled session, a deadline, no retries.

    Failures of the transport are raised as caller errors from here (the SDK lets them
    through unchanged); an error answer is returned to the SDK, which raises its
    TwilioRestException, and is kept in `last_status` / `last_headers` / `last_body` for
    errors.from_sdk. Never logs: the request carries the key.
    """

    def __init__(self, root: str, *, timeout: float) -> None:
        super().__init__(logger=None, is_async=True, timeout=None)
        self.root = root
        self.where = urlsplit(root).hostname or "Twilio"
        self.deadline = asyncio.get_running_loop().time() + timeout
        self.last_status: int | None = None
        self.last_headers: Mapping[str, str] = {}
        self.last_body = ""

    def remaining(self) -> float:
        return self.deadline - asyncio.get_running_loop().time()

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if not (url == self.root or url.startswith(self.root + "/")):
            # The SDK builds every URL on the configured root; anything else would carry
            # the key elsewhere, so it is not sent.
            raise ProviderUnavailable(f"refused to send a request outside {self.where}")
        left = self.remaining()
        if left <= 0:
            raise ProviderTimeout(f"{self.where} did not answer within the timeout")
        session = pools.aiohttp_session(self.root)
        sent = dict(headers or {})
        if auth is not None:
            sent["Authorization"] = aiohttp.encode_basic_auth(auth[0], auth[1])
        failure: Exception | None = None
        try:
            async with session.request(
                method.upper(),
                url,
                params=_pairs(params) or None,
                data=_pairs(data) if data else None,
                headers=sent,
                timeout=aiohttp.ClientTimeout(total=left, sock_connect=min(left, connect_timeout())),
                allow_redirects=False,
            ) as answer:
                body = await answer.text(errors="replace")
                status, answer_headers = answer.status, answer.headers
        except TimeoutError:
            failure = ProviderTimeout(f"{self.where} did not answer within the timeout")
        except aiohttp.ClientError as exc:
            failure = _connection_error(self.where, exc)
        if failure is not None:
            # Raised outside the except blocks: no __context__ chaining back to an
            # aiohttp error whose request_info holds the Authorization header.
            raise failure
        # Only an error answer's body is kept (for its message): a 2xx body may hold what
        # must not linger, such as the Account resource's own auth_token.
        self.last_status, self.last_headers = status, dict(answer_headers)
        self.last_body = body if status >= 300 else ""
        return Response(status, body, dict(answer_headers))


def _connection_error(where: str, exc: aiohttp.ClientError) -> ProviderUnavailable:
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return ProviderUnavailable(f"{where} closed the connection mid-answer ({type(exc).__name__})")
    if isinstance(exc, aiohttp.ClientOSError) and not isinstance(exc, aiohttp.ClientConnectorError):
        return ProviderUnavailable(f"{where} reset the connection ({type(exc).__name__})")
    return ProviderUnavailable(f"could not reach {where} ({type(exc).__name__})")


def _pairs(values: Mapping[str, object] | None) -> list[tuple[str, str]]:
    """Form or query fields as Twilio takes them: a list value is the field repeated."""
    pairs: list[tuple[str, str]] = []
    for name, value in (values or {}).items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is None:
                continue
            if isinstance(item, bool):
                pairs.append((name, "true" if item else "false"))
            else:
                pairs.append((name, str(item)))
    return pairs


def sdk(secret: SecretFields, options: Mapping[str, str], *, timeout: float) -> tuple[Any, PooledHttpClient]:
    """The SDK client of this call, and its HTTP client (for the last answer's details).

    Authenticates with the API key when options.api_key_sid and secret.api_key_secret are
    set, else with the Account SID and the Auth Token. Read from the secret now, at the
    moment of the call, and gone with the client.
    """
    root = api_root(options)
    account = account_sid(options)
    http = PooledHttpClient(root, timeout=timeout)
    if uses_api_key(secret, options):
        username, password = options["api_key_sid"], secret.reveal("api_key_secret")
    else:
        token = secret.get("auth_token")
        if not token:
            raise InvalidRequest(
                "secret.auth_token is required (or secret.api_key_secret with options.api_key_sid)"
            )
        username, password = account, token
    client = Client(
        username=username,
        password=password,
        account_sid=account,
        http_client=http,
        environment=_NO_ENVIRONMENT,
    )
    client.api.base_url = root
    return client, http
