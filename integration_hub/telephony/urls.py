"""The per-call public URLs handed to a provider, and their tokens.

Every URL the hub gives a provider for a call carries that call's own token in its path
(Twilio's <Stream url> takes no query string), 256 random bits, stored only as its
SHA-256. A request to one of them is trusted only after the token matches, compared in
constant time; a provider's own signature is then checked on top where it has one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

PREFIX = "/telephony/v1"
TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(token_hash(token), stored_hash)


def call_path(call_id: str, token: str, leaf: str) -> str:
    return f"{PREFIX}/calls/{call_id}/{token}/{leaf}"


@dataclass(frozen=True, slots=True)
class CallUrls:
    """The public URLs of one call under HUB_PUBLIC_URL."""

    base: str  # e.g. https://hub.example.com (no trailing slash)

    def events(self, call_id: str, token: str) -> str:
        return self.base + call_path(call_id, token, "events")

    def answer(self, call_id: str, token: str) -> str:
        return self.base + call_path(call_id, token, "answer")

    def media(self, call_id: str, token: str) -> str:
        return self.public_websocket(call_path(call_id, token, "media"))

    def public_websocket(self, path_and_query: str) -> str:
        """The ws:// (wss:// under https) URL the provider opened for a request that
        reached `path_and_query`: Twilio signs a Media Streams handshake over it."""
        parts = urlsplit(self.base + path_and_query)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))

    def public(self, path_and_query: str) -> str:
        """The URL the provider used for a request that reached `path_and_query`:
        signatures (Twilio's) cover the URL as the provider saw it, not as the proxy
        in front of the hub forwarded it."""
        return self.base + path_and_query
