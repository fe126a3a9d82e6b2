"""Keeping secrets out of logs.

Two layers: regular expressions for credential formats we know (OpenAI/Anthropic keys, bearer
tokens, AWS and Google keys, the hub's own tokens), and a process-wide registry of every secret
value this process has opened, which catches keys whose format no pattern knows.

The registry stores keyed fingerprints, not the values. A set of plaintexts would be the one
place where every secret the process ever touched lives until exit, reachable from a core dump,
a debugger or an accidental log of the registry itself. A fingerprint lets us recognise a value
when we see it again without keeping it. The fingerprint key is random per process, so leaked
fingerprints cannot be brute-forced offline or matched across processes, as an unkeyed hash of
a guessable value could be.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping

REDACTED = "[REDACTED]"
# Shorter values are too likely to be ordinary words or numbers, and redacting every "12345678"
# in every log line would do more harm than good.
MIN_REGISTERED_LENGTH = 8
# Scanning every substring of a token costs (token length x distinct secret lengths) hashes; past
# this length only whole tokens and their ':'/'/' parts are checked.
SUBSTRING_SCAN_LIMIT = 512


def _keep_prefix(match: re.Match[str]) -> str:
    return match.group(1) + REDACTED


def _replace_whole(match: re.Match[str]) -> str:
    return REDACTED


_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    # First, so the whole credential after "Bearer" goes, whatever its format.
    (re.compile(r"(\b[Bb]earer\s+)[A-Za-z0-9._~+/=\-]{8,}"), _keep_prefix),
    # OpenAI/Anthropic style (sk-..., sk-ant-..., sk-proj-...). The look-behind keeps words such
    # as "task-scheduler-01" or "disk-usage-alerts" intact.
    (re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{8,}"), _replace_whole),
    (re.compile(r"(?:AKIA|ASIA)[0-9A-Z]{16}"), _replace_whole),
    (re.compile(r"AIza[0-9A-Za-z_\-]{35}"), _replace_whole),
    (re.compile(r"ihub_[A-Za-z0-9_\-]{16,}"), _replace_whole),
)

_TOKEN = re.compile(r"[^\s\"'`,;=&?()\[\]{}<>]+")
_TOKEN_PART = re.compile(r"[^:/]+")


class _SecretRegistry:
    """Keyed fingerprints of registered secrets, and the set of their lengths."""

    def __init__(self) -> None:
        # Keyed once; copying the keyed state is cheaper than re-keying for every candidate.
        self._hasher = hashlib.blake2b(key=os.urandom(32), digest_size=16)
        self._fingerprints: set[bytes] = set()
        # Replaced, never mutated, so readers can iterate it while another thread registers.
        self.lengths: frozenset[int] = frozenset()
        self._lock = threading.Lock()

    def register(self, value: str) -> None:
        if len(value) < MIN_REGISTERED_LENGTH:
            return
        fingerprint = self._fingerprint(value)
        if fingerprint in self._fingerprints:
            return
        with self._lock:
            self._fingerprints.add(fingerprint)
            self.lengths = self.lengths | {len(value)}

    def contains(self, candidate: str) -> bool:
        return len(candidate) in self.lengths and self._fingerprint(candidate) in self._fingerprints

    def _fingerprint(self, value: str) -> bytes:
        hasher = self._hasher.copy()
        hasher.update(value.encode("utf-8", "surrogatepass"))
        return hasher.digest()


_REGISTRY = _SecretRegistry()


def register_secret(value: str) -> None:
    """Remember (a fingerprint of) a secret value so that redact() removes it from any text.

    Values shorter than MIN_REGISTERED_LENGTH characters are ignored.
    """
    _REGISTRY.register(value)


def redact(text: str) -> str:
    """Replace known credential formats and every registered secret value with [REDACTED]."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _redact_registered(text)


def redact_mapping(data: Mapping[str, object]) -> dict[str, object]:
    """A copy of `data` (e.g. structured log extras) with every str value redacted, recursively."""
    return {key: _redact_value(value) for key, value in data.items()}


def _redact_value(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item) for item in value]
    return value


def _redact_registered(text: str) -> str:
    lengths = _REGISTRY.lengths
    if not lengths:
        return text
    shortest = min(lengths)
    return _TOKEN.sub(lambda match: _redact_token(match.group(0), lengths, shortest), text)


def _redact_token(token: str, lengths: frozenset[int], shortest: int) -> str:
    if len(token) < shortest:
        return token
    if _REGISTRY.contains(token):
        return REDACTED
    hidden = bytearray(len(token))
    _mark_registered_parts(token, hidden)
    if len(token) <= SUBSTRING_SCAN_LIMIT:
        _mark_registered_substrings(token, lengths, hidden)
    return _replace_marked(token, hidden)


def _mark_registered_parts(token: str, hidden: bytearray) -> None:
    # "user:secret", "https://host/secret/path": the secret is a whole part between ':' and '/'.
    for part in _TOKEN_PART.finditer(token):
        if _REGISTRY.contains(part.group(0)):
            hidden[part.start() : part.end()] = b"\x01" * (part.end() - part.start())


def _mark_registered_substrings(token: str, lengths: frozenset[int], hidden: bytearray) -> None:
    # A secret glued to other text ("key_q7Zx9Lm2Pw4Rt8Yv.json"): try every window of each
    # registered length.
    for length in lengths:
        for start in range(len(token) - length + 1):
            if _REGISTRY.contains(token[start : start + length]):
                hidden[start : start + length] = b"\x01" * length


def _replace_marked(token: str, hidden: bytearray) -> str:
    if not any(hidden):
        return token
    pieces: list[str] = []
    for position, character in enumerate(token):
        if not hidden[position]:
            pieces.append(character)
        elif position == 0 or not hidden[position - 1]:
            pieces.append(REDACTED)
    return "".join(pieces)


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class RedactingFilter(logging.Filter):
    """Redacts the message, exception text, stack and extras of every record it sees.

    Attach it to handlers rather than loggers: a logger's filters do not see records that
    propagate up from child loggers, a handler's filters see everything it emits.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(_message_of(record))
        record.args = ()
        if record.exc_info:
            # Format now, redact, and drop exc_info so no handler formats the raw exception again.
            record.exc_text = self._formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        _redact_extras(record)
        return True


def _message_of(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError):
        # A format string that does not match its args must not turn a log call into a crash.
        return f"{record.msg} {record.args!r}"


def _redact_extras(record: logging.LogRecord) -> None:
    for name, value in list(vars(record).items()):
        if name not in _STANDARD_RECORD_ATTRIBUTES:
            setattr(record, name, _redact_value(value))
