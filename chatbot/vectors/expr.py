"""Filter expressions for Milvus, built only from validated ids and escaped literals.

Every read and delete is scoped by tenant and bot through these functions: a value is
written as a double-quoted string literal with backslash and quote escaped, so that a
bot id such as ``x" or bot_id != "`` stays one literal and cannot widen the filter.
Control characters are refused rather than escaped: no id needs them, and the escape
sets of Milvus's parser (Go) and Milvus Lite's (Python) agree only on the common ones.
"""

from __future__ import annotations

from chatbot.vectors.errors import InvalidIdentifierError

# Byte limits, because Milvus's VARCHAR max_length counts UTF-8 bytes.
TENANT_MAX_BYTES = 128
BOT_MAX_BYTES = 128
SOURCE_MAX_BYTES = 2048  # a source may be a page URL


def check_id(kind: str, value: str, max_bytes: int) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidIdentifierError(f"{kind} id must be a non-empty string")
    if len(value.encode("utf-8")) > max_bytes:
        raise InvalidIdentifierError(f"{kind} id is longer than {max_bytes} bytes")
    if any(ch < " " or ch == "\x7f" for ch in value):
        raise InvalidIdentifierError(f"{kind} id contains a control character")
    return value


def quote(value: str) -> str:
    """A Milvus string literal for value (an id already passed through check_id)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def scope(tenant: str, bot: str, source: str | None = None) -> str:
    """The filter every search, count and delete carries: this tenant's bot (and source)."""
    parts = [
        f"tenant == {quote(check_id('tenant', tenant, TENANT_MAX_BYTES))}",
        f"bot_id == {quote(check_id('bot', bot, BOT_MAX_BYTES))}",
    ]
    if source is not None:
        parts.append(f"source_id == {quote(check_id('source', source, SOURCE_MAX_BYTES))}")
    return " and ".join(parts)
