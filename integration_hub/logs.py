"""Structured JSON logs, one object per line, every line passed through the redactor.

The redaction filter sits on the handler, so it sees every record of every
logger (ours, asyncio's, grpc's, the SDKs') after formatting: a secret that a
library puts in a message or a traceback is replaced before it is written.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from integration_hub.vault.redaction import RedactingFilter, redact_mapping

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}
        if extras:
            entry.update(redact_mapping(extras))
        if record.exc_text:
            entry["exc"] = record.exc_text
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Replace the root handlers with one redacting JSON handler; return it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries' own chatter stays at WARNING unless we are debugging.
    for noisy in ("aiohttp.access", "asyncio", "httpx", "openai", "grpc"):
        logging.getLogger(noisy).setLevel(level if level == "DEBUG" else "WARNING")
    return handler
