"""Azure AI Speech on the wire: where each API lives, the key header, HTTP and errors.

Hosts, from the credential's options:
- `region` alone (the usual case): the regional hosts,
  https://{region}.stt.speech.microsoft.com (short-audio STT, real-time websocket),
  https://{region}.tts.speech.microsoft.com (TTS, voices list) and
  https://{region}.api.cognitive.microsoft.com (fast transcription); regions whose name
  starts with ``china`` use the ``.azure.cn`` hosts, as the Speech SDK does.
- `endpoint` (a resource's custom domain, https://{name}.cognitiveservices.azure.com, as
  private endpoints require): every API under that one host, the former host's first
  label becoming the first path element as Microsoft documents for custom domains:
  {endpoint}/stt/speech/..., {endpoint}/tts/cognitiveservices/..., and
  {endpoint}/speechtotext/transcriptions:transcribe. An http:// endpoint (a loopback
  test server) makes the websocket ws://.

The key travels only as the `Ocp-Apim-Subscription-Key` header of each request, read
from the secret when the request is built; redirects are never followed, so it reaches
only the configured host. aiohttp's exceptions are re-raised `from None` as caller
errors whose messages name the host, never a header.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from callers import pools
from callers.base import (
    CallerError,
    InvalidRequest,
    ProviderTimeout,
    ProviderUnavailable,
    SecretFields,
    error_from_http_status,
)
from callers.timeouts import connect_timeout

KEY_HEADER = "Ocp-Apim-Subscription-Key"
USER_AGENT = "integration-hub"
SHORT_AUDIO_PATH = "speech/recognition/conversation/cognitiveservices/v1"
FAST_TRANSCRIPTION_PATH = "speechtotext/transcriptions:transcribe"
FAST_TRANSCRIPTION_API_VERSION = "2024-11-15"
TTS_PATH = "cognitiveservices/v1"
VOICES_PATH = "cognitiveservices/voices/list"

# Azure region names are lower-case letters and digits (eastus, westeurope2, ...):
# checked before a region goes into a host name.
_REGION = re.compile(r"^[a-z][a-z0-9]{1,40}$")
_QUOTED_BODY_CHARS = 300
_REQUEST_ID_HEADERS = ("X-RequestId", "apim-request-id", "X-Request-Id")


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Every URL one credential's options lead to; holds no key."""

    short_audio: URL
    realtime: URL  # ws:// or wss://
    fast_transcription: URL
    tts: URL
    voices: URL


_CACHE: dict[tuple[str, str], Endpoints] = {}


def endpoints(options: Mapping[str, str]) -> Endpoints:
    region = (options.get("region") or "").strip()
    custom = (options.get("endpoint") or "").strip()
    key = (region, custom)
    found = _CACHE.get(key)
    if found is None:
        found = _custom_endpoints(custom) if custom else _regional_endpoints(region)
        if len(_CACHE) >= 256:
            _CACHE.clear()
        _CACHE[key] = found
    return found


def _regional_endpoints(region: str) -> Endpoints:
    if not _REGION.match(region):
        raise InvalidRequest(
            "options.region: an Azure region name (lower-case letters and digits, e.g. eastus) is required "
            "unless options.endpoint is set"
        )
    suffix = "azure.cn" if region.startswith("china") else "microsoft.com"
    stt = f"{region}.stt.speech.{suffix}"
    tts = f"https://{region}.tts.speech.{suffix}"
    return Endpoints(
        short_audio=URL(f"https://{stt}/{SHORT_AUDIO_PATH}"),
        realtime=URL(f"wss://{stt}/{SHORT_AUDIO_PATH}"),
        fast_transcription=URL(f"https://{region}.api.cognitive.{suffix}/{FAST_TRANSCRIPTION_PATH}"),
        tts=URL(f"{tts}/{TTS_PATH}"),
        voices=URL(f"{tts}/{VOICES_PATH}"),
    )


def _custom_endpoints(endpoint: str) -> Endpoints:
    try:
        base = URL(endpoint.rstrip("/"))
    except ValueError:
        base = URL()
    if base.scheme not in ("http", "https") or not base.host:
        raise InvalidRequest(
            "options.endpoint: must be an http(s) URL, e.g. https://NAME.cognitiveservices.azure.com"
        )
    root = str(base)
    ws_root = ("wss" if base.scheme == "https" else "ws") + root[len(base.scheme) :]
    return Endpoints(
        short_audio=URL(f"{root}/stt/{SHORT_AUDIO_PATH}"),
        realtime=URL(f"{ws_root}/stt/{SHORT_AUDIO_PATH}"),
        fast_transcription=URL(f"{root}/{FAST_TRANSCRIPTION_PATH}"),
        tts=URL(f"{root}/tts/{TTS_PATH}"),
        voices=URL(f"{root}/tts/{VOICES_PATH}"),
    )


def upstream(url: URL) -> str:
    """The connection pool's key: scheme://host[:port] (ws schemes pooled as http)."""
    scheme = {"ws": "http", "wss": "https"}.get(url.scheme, url.scheme)
    return str(url.with_scheme(scheme).origin())


def key_headers(secret: SecretFields, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT}
    if extra:
        headers.update(extra)
    headers[KEY_HEADER] = secret.reveal("api_key")
    return headers


_TIMEOUTS: dict[tuple[float, float], aiohttp.ClientTimeout] = {}


def client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """`total` bounds the whole call; connecting is bounded by the call's connect timeout."""
    key = (seconds, connect_timeout())
    found = _TIMEOUTS.get(key)
    if found is None:
        if len(_TIMEOUTS) >= 256:
            _TIMEOUTS.clear()
        found = _TIMEOUTS[key] = aiohttp.ClientTimeout(total=seconds, sock_connect=min(key))
    return found


def request_id(headers: Mapping[str, str]) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


# --- errors ---------------------------------------------------------------------


def error_message(body: bytes, status: int, host: str) -> str:
    """Azure's own error text. The Cognitive Services gateway answers
    {"error": {"code", "message"}}; fast transcription {"code", "message", "innerError"};
    the speech front ends often an empty body (a TTS 400) or plain text."""
    text = ""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()[:_QUOTED_BODY_CHARS]
    else:
        if isinstance(data, dict):
            found = data.get("error", data)
            if isinstance(found, dict):
                message = found.get("message") or found.get("Message")
                code = found.get("code") or found.get("Code")
                inner = found.get("innerError")
                if isinstance(inner, dict) and inner.get("message"):
                    message = f"{message}: {inner['message']}" if message else inner["message"]
                if message:
                    text = f"{code}: {message}" if code and str(code) != str(status) else str(message)
            elif isinstance(found, str):
                text = found
        if not text:
            text = orjson.dumps(data).decode()[:_QUOTED_BODY_CHARS]
    return f"Azure Speech ({host}) answered HTTP {status}" + (f": {text}" if text else "")


def http_error(status: int, body: bytes, headers: Mapping[str, str], host: str) -> CallerError:
    if 300 <= status < 400:
        return ProviderUnavailable(
            f"{host} answered with a redirect (HTTP {status}), which is not followed so that the key is "
            "never sent to another address: check options.region / options.endpoint",
            provider_status=status,
        )
    return error_from_http_status(status, error_message(body, status, host), headers.get("Retry-After"))


def timeout_error(url: URL) -> ProviderTimeout:
    return ProviderTimeout(f"{url.host} did not answer within the timeout")


def connection_error(url: URL, exc: BaseException) -> ProviderUnavailable:
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return ProviderUnavailable(f"{url.host} closed the connection mid-answer ({type(exc).__name__})")
    return ProviderUnavailable(f"could not reach {url.host} ({type(exc).__name__})")


# --- requests -------------------------------------------------------------------


async def send(
    method: str,
    url: URL,
    headers: Mapping[str, str],
    data: Any,
    timeout: float,
) -> tuple[bytes, str | None]:
    """One request; the whole answer body and the request id, or a caller error."""
    session = pools.aiohttp_session(upstream(url))
    try:
        async with session.request(
            method,
            url,
            data=data,
            headers=headers,
            timeout=client_timeout(timeout),
            allow_redirects=False,
        ) as response:
            payload = await response.read()
            if not 200 <= response.status < 300:
                raise http_error(response.status, payload, response.headers, url.host or "")
            return payload, request_id(response.headers)
    except TimeoutError:
        raise timeout_error(url) from None
    except aiohttp.ClientError as exc:
        raise connection_error(url, exc) from None


def parse_json(payload: bytes, url: URL) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProviderUnavailable(f"unexpected answer from {url.host}: the body is not JSON") from None
