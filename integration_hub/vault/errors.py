"""The vault's error types.

KeyringError is for operators: its message says exactly what is wrong with the keyring.
OpenError is for callers that cannot tell who is asking: its message is the same for every
cause, so that an API surfacing it is no oracle for probing blobs, and the real cause
travels separately on `.cause` for the audit trail.
"""

from __future__ import annotations

import enum

OPEN_ERROR_MESSAGE = "credential could not be opened"


class KeyringError(Exception):
    """The keyring cannot be loaded, saved or changed; the message names the problem (never key bytes)."""


class OpenFailure(enum.Enum):
    """Why a sealed credential could not be opened (audit trail only; never shown to callers)."""

    MALFORMED = "malformed"
    UNKNOWN_VERSION = "unknown_version"
    UNKNOWN_KEY = "unknown_key"
    RETIRED_KEY = "retired_key"
    AUTHENTICATION_FAILED = "authentication_failed"


class OpenError(Exception):
    """A sealed credential could not be opened. str() is identical for every cause."""

    def __init__(self, cause: OpenFailure) -> None:
        super().__init__(OPEN_ERROR_MESSAGE)
        self.cause = cause

    def __reduce__(self) -> tuple[type[OpenError], tuple[OpenFailure]]:
        # The default reduction would call __init__ with the message; rebuild from the cause instead
        # so the error survives pickling (multiprocessing, task queues) intact.
        return (type(self), (self.cause,))
