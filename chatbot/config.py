"""The chatbot layer's settings, each an environment variable read once at start.

CHATBOT_HUB_TARGET        the hub's gRPC address (default 127.0.0.1:9004)
CHATBOT_HUB_TLS           1: TLS to the hub (default 0: loopback or a mesh)
CHATBOT_HUB_TOKENS_FILE   a file of hub tokens, one per line, one per tenant served (required)
CHATBOT_DATABASE_URL      sqlite:///path (default sqlite:///.chatbot/chatbot.db) or postgresql://...
CHATBOT_VECTORS_URI       a Milvus Lite file (default .chatbot/vectors.db) or http(s)://milvus:19530
CHATBOT_HOST              the address to serve on (default 127.0.0.1)
CHATBOT_GRPC_PORT         ChatbotService (default 9014; 0 picks a free port)
CHATBOT_HTTP_PORT         the HTTP API and the web chat page (default 9015; 0 picks one)
CHATBOT_HYBRID_SEARCH     1: fuse BM25 with the dense search (default 0; see chatbot.retrieval)
CHATBOT_FETCH_ALLOW       networks a website source may be fetched from despite being private or
                          loopback, comma-separated CIDRs (default none: only public addresses)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chatbot.fetch import parse_allow_list
from chatbot.tenants import ConfigurationError


@dataclass(frozen=True, slots=True)
class Settings:
    hub_target: str = "127.0.0.1:9004"
    hub_tls: bool = False
    hub_tokens_file: str = ""
    database_url: str = "sqlite:///.chatbot/chatbot.db"
    vectors_uri: str = ".chatbot/vectors.db"
    host: str = "127.0.0.1"
    grpc_port: int = 9014
    http_port: int = 9015
    fetch_allow: str = ""
    hybrid_search: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = cls()
        settings = cls(
            hub_target=env.get("CHATBOT_HUB_TARGET", defaults.hub_target),
            hub_tls=_flag(env, "CHATBOT_HUB_TLS"),
            hub_tokens_file=env.get("CHATBOT_HUB_TOKENS_FILE", ""),
            database_url=env.get("CHATBOT_DATABASE_URL", defaults.database_url),
            vectors_uri=env.get("CHATBOT_VECTORS_URI", defaults.vectors_uri),
            host=env.get("CHATBOT_HOST", defaults.host),
            grpc_port=_port(env, "CHATBOT_GRPC_PORT", defaults.grpc_port),
            http_port=_port(env, "CHATBOT_HTTP_PORT", defaults.http_port),
            fetch_allow=env.get("CHATBOT_FETCH_ALLOW", ""),
            hybrid_search=_flag(env, "CHATBOT_HYBRID_SEARCH"),
        )
        try:
            parse_allow_list(settings.fetch_allow)  # a bad CIDR is refused at start, named
        except ValueError as error:
            raise ConfigurationError(f"CHATBOT_FETCH_ALLOW: {error}") from None
        return settings

    def service_tokens(self) -> list[str]:
        if not self.hub_tokens_file:
            raise ConfigurationError("CHATBOT_HUB_TOKENS_FILE is not set: a file of hub tokens, one per line")
        path = Path(self.hub_tokens_file)
        try:
            lines = path.read_text().splitlines()
        except OSError as error:
            raise ConfigurationError(f"CHATBOT_HUB_TOKENS_FILE {path}: {error.strerror}") from None
        tokens = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not tokens:
            raise ConfigurationError(f"CHATBOT_HUB_TOKENS_FILE {path} holds no token")
        return tokens


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "0").strip().lower()
    if value not in ("0", "1", "true", "false", ""):
        raise ConfigurationError(f"{name} must be 0 or 1, not {value!r}")
    return value in ("1", "true")


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) > 65535:
        raise ConfigurationError(f"{name} must be a port number, not {raw!r}")
    return int(raw)
