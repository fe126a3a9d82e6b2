"""A service-account key file -> service-account credentials holding a fresh access token.

The token exchange is the OAuth 2.0 JWT bearer grant (RFC 7523) that google-auth's
service_account.Credentials performs in `refresh()`: an RS256-signed assertion POSTed
to the key file's token_uri. It is done here, asynchronously, because google-auth's
refresh is blocking (`requests`, in a worker thread, up to 120 s), so it could neither
honour the call's deadline nor be cancelled. The credentials are then handed to the
SDK with their token set, so the SDK never refreshes them itself.

A token is fetched for every call and dropped with it, like the key it comes from.
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from google.auth import jwt
from google.oauth2 import service_account

from callers import pools
from callers.base import (
    AuthenticationFailed,
    CallerError,
    ProviderTimeout,
    ProviderUnavailable,
    error_from_http_status,
)
from callers.timeouts import connect_timeout

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS = 3600  # the most Google accepts
# Token endpoint errors meaning the key itself is refused: deleted or disabled key or
# account (invalid_grant), or a key file the server does not know (invalid_client).
_REFUSED_GRANTS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})


def load_credentials(key_file: str) -> tuple[service_account.Credentials, str]:
    """The credentials and token_uri of a key file; AuthenticationFailed if it is unusable.

    The message names only the kind of failure: the file holds a private key.
    """
    try:
        info = json.loads(key_file)
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[SCOPE]
        )
        token_uri = str(info["token_uri"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuthenticationFailed(
            f"the service-account key file cannot be used ({type(exc).__name__})"
        ) from None
    return credentials, token_uri


def grant_assertion(credentials: service_account.Credentials, token_uri: str, now: int) -> str:
    """The signed JWT that asks for a cloud-platform token on behalf of the service account."""
    payload = {
        "iss": credentials.service_account_email,
        "scope": SCOPE,
        "aud": token_uri,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECONDS,
    }
    # Signed with the key file's private key; the header's kid is its private_key_id.
    token: bytes = jwt.encode(credentials.signer, payload)  # type: ignore[no-untyped-call]
    return token.decode("ascii")


async def authorize(credentials: service_account.Credentials, token_uri: str, *, timeout: float) -> None:
    """Exchange the assertion for an access token and store it in `credentials`."""
    parts = urlsplit(token_uri)
    session = pools.aiohttp_session(f"{parts.scheme}://{parts.netloc}")
    form = {
        "grant_type": JWT_BEARER_GRANT,
        "assertion": grant_assertion(credentials, token_uri, int(time.time())),
    }
    try:
        # Connecting is bounded by the call's connect timeout (callers.timeouts).
        limits = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, connect_timeout()))
        async with session.post(token_uri, data=form, timeout=limits) as response:
            body = await _json_body(response)
            if response.status != 200:
                raise token_error(response.status, body, response.headers.get("Retry-After"))
    except TimeoutError:
        raise ProviderTimeout(f"{parts.hostname} did not issue a token within the timeout") from None
    except aiohttp.ClientError as exc:
        raise ProviderUnavailable(
            f"could not reach {parts.hostname} for a token ({type(exc).__name__})"
        ) from None
    token, lifetime = body.get("access_token"), body.get("expires_in")
    if not isinstance(token, str) or not isinstance(lifetime, int | float):
        raise ProviderUnavailable(f"{parts.hostname} answered the token request without a token")
    credentials.token = token
    # google-auth compares expiry with naive UTC datetimes.
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    credentials.expiry = now + datetime.timedelta(seconds=lifetime)


async def _json_body(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        body = await response.json(content_type=None)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def token_error(status: int, body: dict[str, Any], retry_after: str | None) -> CallerError:
    """The caller error for a refused token request, from its OAuth error body."""
    error, description = body.get("error"), body.get("error_description")
    message = f"{error}: {description}" if error and description else str(error or f"HTTP {status}")
    if status in (400, 401) and error in _REFUSED_GRANTS:
        # OAuth answers a refused grant with 400 (RFC 6749 5.2), but for the hub it is
        # the credential that failed, not the request: AuthenticationFailed.
        return AuthenticationFailed(message, provider_status=status)
    return error_from_http_status(status, message, retry_after)
