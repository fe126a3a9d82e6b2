"""AssemblyAI's REST wire (v2): JSON over the pooled aiohttp session, key in `Authorization`.

Why not the `assemblyai` SDK (1.8): its `Client`/`Transcriber` are synchronous (httpx in
threads); its `AsyncClient` bakes the key into one httpx pool's default headers, so a pool
per key would have to be kept for the life of the process (the hub pools connections, never
keys: callers.pools), and its `AsyncTranscriber` polls at a fixed `settings.polling_interval`
(3 s by default) with no overall deadline. Speaking the few requests ourselves keeps the
hub's pooled connections, its connect timeout (callers.timeouts) and a short polling backoff.
The SDK source is the reference for what goes on the wire:

- POST {base}/v2/upload, the audio bytes as the body -> {"upload_url"};
- POST {base}/v2/transcript, JSON {audio_url, speech_models, language_code | language_detection,
  punctuate, format_text, speaker_labels, keyterms_prompt, ...} -> {id, status: "queued"};
- GET {base}/v2/transcript/{id} until status is "completed" or "error";
- GET {base}/v2/transcript?limit=1 lists transcripts (verify).

The key goes as the bare `Authorization` value (no "Bearer"). Errors are the HTTP status
with JSON {"error": "..."}; redirects are never followed, so the key reaches only the
configured host.
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

DEFAULT_BASE_URL = "https://api.assemblyai.com"
DEFAULT_STREAMING_URL = "https://streaming.assemblyai.com"
KEY_FIELD = "api_key"
_QUOTED_BODY_CHARS = 300

# BCP-47 regions AssemblyAI names as codes of their own; any other region is served by the
# language's primary code ("fr-CA" -> "fr").
_REGIONAL_CODES = {"en-us": "en_us", "en-gb": "en_uk", "en-au": "en_au", "de-ch": "de_ch"}
_BCP47 = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The API root of a credential's options, parsed once per call; never holds a key."""

    base: URL
    upstream: str  # scheme://host[:port]: the pool's key
    host: str  # for messages

    def url(self, path: str) -> URL:
        return self.base.with_path(self.base.path.rstrip("/") + path)


def endpoint(
    options: Mapping[str, str],
    name: str = "base_url",
    default: str = DEFAULT_BASE_URL,
    schemes: tuple[str, ...] = ("http", "https"),
) -> Endpoint:
    raw = options.get(name) or default
    try:
        parsed = URL(raw)
    except ValueError:
        parsed = URL()
    if parsed.scheme not in schemes or not parsed.host:
        # Options are validated as http(s) URLs when stored; this guards a direct call.
        raise InvalidRequest(f"options.{name}: not an {'/'.join(schemes)} URL")
    return Endpoint(base=parsed, upstream=str(parsed.origin()), host=parsed.host)


def auth_headers(secret: SecretFields) -> dict[str, str]:
    """The key as AssemblyAI takes it: the bare value of `Authorization`."""
    return {"Authorization": secret.reveal(KEY_FIELD)}


def client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds, sock_connect=min(seconds, connect_timeout()))


def language_code(language: str) -> str:
    """AssemblyAI's code for a BCP-47 tag: "en-US" -> "en_us", "es-MX" -> "es"."""
    if not _BCP47.match(language):
        raise InvalidRequest(f"language: {language!r} is not a BCP-47 language tag")
    tag = language.lower()
    parts = tag.split("-")
    if len(parts) >= 2:
        regional = _REGIONAL_CODES.get(f"{parts[0]}-{parts[1]}")
        if regional is not None:
            return regional
    return parts[0]


# --- errors -----------------------------------------------------------------------


def error_message(body: bytes) -> str:
    """The provider's text: {"error": "..."} (or {"detail"/"message"}), else the body, shortened."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return text[:_QUOTED_BODY_CHARS] or "(empty body)"
    if isinstance(data, dict):
        for name in ("error", "detail", "message"):
            found = data.get(name)
            if isinstance(found, str) and found:
                return found
            if found:
                return orjson.dumps(found).decode()[:_QUOTED_BODY_CHARS]
    return orjson.dumps(data).decode()[:_QUOTED_BODY_CHARS]


def redact(message: str, key: str) -> str:
    """The message without the key, should a provider ever echo it."""
    return message.replace(key, "[redacted]") if key else message


def http_error(status: int, body: bytes, headers: Mapping[str, str], key: str) -> CallerError:
    if 300 <= status < 400:
        return ProviderUnavailable(
            f"AssemblyAI answered with a redirect (HTTP {status}), which is not followed so that "
            "the key is never sent to another address: check the configured URL",
            provider_status=status,
        )
    message = redact(error_message(body), key)
    return error_from_http_status(status, f"AssemblyAI: {message}", headers.get("Retry-After"))


# --- requests ---------------------------------------------------------------------


async def request_json(
    target: Endpoint,
    method: str,
    path: str,
    secret: SecretFields,
    *,
    timeout: float,
    json_body: object | None = None,
    data: bytes | None = None,
    params: Mapping[str, str] | None = None,
) -> Any:
    """One request; the decoded JSON answer, or the classified error."""
    if timeout <= 0:
        raise ProviderTimeout(f"{target.host} did not answer within the timeout")
    headers = auth_headers(secret)
    key = headers["Authorization"]
    body: bytes | None = data
    if json_body is not None:
        body = orjson.dumps(json_body)
        headers["Content-Type"] = "application/json"
    elif data is not None:
        headers["Content-Type"] = "application/octet-stream"
    session = pools.aiohttp_session(target.upstream)
    try:
        async with session.request(
            method,
            target.url(path),
            params=params,
            data=body,
            headers=headers,
            timeout=client_timeout(timeout),
            allow_redirects=False,
        ) as response:
            payload = await response.read()
            if not 200 <= response.status < 300:
                raise http_error(response.status, payload, response.headers, key)
    except TimeoutError:
        raise ProviderTimeout(f"{target.host} did not answer within {timeout:.3g} s") from None
    except aiohttp.ClientError as exc:
        raise ProviderUnavailable(f"could not reach {target.host}: {type(exc).__name__}") from None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProviderUnavailable(f"{target.host} answered with something that is not JSON") from None
