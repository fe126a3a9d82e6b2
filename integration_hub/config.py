"""Every HUB_* setting, read once from the environment, typed and checked."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    # Store: postgresql://... in production; unset -> embedded SQLite at .hub/hub.db.
    database_url: str | None = None
    # Shared cache + cross-replica invalidation; unset -> in-process cache.
    redis_url: str | None = None
    # The keyring file (mode 0600). No default: the service refuses to start without it.
    keyring_file: str | None = None
    host: str = "127.0.0.1"
    grpc_port: int = 9004
    http_port: int = 9005
    log_level: str = "INFO"
    # Seconds SIGTERM waits for in-flight calls before cancelling them.
    drain_seconds: float = 20.0
    # Seconds a cached ciphertext row / token row may be served before re-reading.
    cache_ttl_seconds: float = 30.0
    # Largest request body accepted over HTTP and gRPC.
    max_request_bytes: int = 4 * 1024 * 1024
    # Routes, policies and limits (TOML; see integration_hub/policy/config.py); unset -> defaults only.
    policy_file: str | None = None
    # Optional TLS on gRPC; with tls_client_ca set, client certificates are required (mTLS).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    # Server processes for `serve` (a supervisor and this many workers); None: one per core.
    workers: int | None = None
    # The hub's address as telephony providers reach it (https://hub.example.com): the
    # base of the status-callback, answer and media URLs handed to them. Unset: the
    # TelephonyService refuses to place calls (FAILED_PRECONDITION naming this).
    public_url: str | None = None
    # The chatbot layer's HTTP API (http://127.0.0.1:9015): the admin console's Chatbot page
    # reads its bots and ingestion tasks through the hub (/console/chatbot/...). Unset: no page.
    chatbot_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        settings = cls(
            database_url=_optional(env, "HUB_DATABASE_URL"),
            redis_url=_optional(env, "HUB_REDIS_URL"),
            keyring_file=_optional(env, "HUB_KEYRING_FILE"),
            host=env.get("HUB_HOST", cls.host),
            grpc_port=_port(env, "HUB_GRPC_PORT", cls.grpc_port),
            http_port=_port(env, "HUB_HTTP_PORT", cls.http_port),
            log_level=env.get("HUB_LOG_LEVEL", cls.log_level).upper(),
            drain_seconds=_positive_float(env, "HUB_DRAIN_SECONDS", cls.drain_seconds),
            cache_ttl_seconds=_positive_float(env, "HUB_CACHE_TTL_SECONDS", cls.cache_ttl_seconds),
            max_request_bytes=int(_positive_float(env, "HUB_MAX_REQUEST_BYTES", cls.max_request_bytes)),
            policy_file=_optional(env, "HUB_POLICY_FILE"),
            tls_cert_file=_optional(env, "HUB_TLS_CERT_FILE"),
            tls_key_file=_optional(env, "HUB_TLS_KEY_FILE"),
            tls_client_ca_file=_optional(env, "HUB_TLS_CLIENT_CA_FILE"),
            workers=_optional_positive_int(env, "HUB_WORKERS"),
            public_url=_public_url(env, "HUB_PUBLIC_URL"),
            chatbot_url=_public_url(env, "HUB_CHATBOT_URL"),
        )
        settings.check()
        return settings

    def check(self) -> None:
        if self.log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(f"HUB_LOG_LEVEL: {self.log_level!r} is not one of DEBUG, INFO, WARNING, ERROR")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("HUB_TLS_CERT_FILE and HUB_TLS_KEY_FILE must be set together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ConfigError("HUB_TLS_CLIENT_CA_FILE (mTLS) needs HUB_TLS_CERT_FILE and HUB_TLS_KEY_FILE")


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _public_url(env: Mapping[str, str], name: str) -> str | None:
    raw = _optional(env, name)
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{name}: {raw!r} is not an http(s):// URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"{name}: must have no query, fragment or user info")
    return raw.rstrip("/")


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name}: {port} is outside 0..65535")
    return port


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}: must be greater than 0, got {value}")
    return value


def _optional_positive_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a whole number") from None
    if value < 1:
        raise ConfigError(f"{name}: must be at least 1, got {value}")
    return value
