"""Persistence for the hub: one Store protocol, a Postgres and a SQLite backend.

Start-up is open_store(url), then ``await store.connect()`` and ``await store.migrate()``.
"""

from __future__ import annotations

from .base import (
    AuditEvent,
    CredentialRow,
    DuplicateName,
    StaleWrite,
    Store,
    StoreError,
    StoreUnavailable,
    TokenRow,
)
from .postgres import PostgresStore
from .sqlite import SqliteStore

__all__ = [
    "DEFAULT_SQLITE_PATH",
    "AuditEvent",
    "CredentialRow",
    "DuplicateName",
    "PostgresStore",
    "SqliteStore",
    "StaleWrite",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TokenRow",
    "open_store",
]

# Relative to the working directory: the embedded default keeps its data next to the run.
DEFAULT_SQLITE_PATH = ".hub/hub.db"

_POSTGRES_PREFIXES = ("postgresql://", "postgres://")
_SQLITE_PREFIX = "sqlite:///"


def open_store(url: str | None) -> Store:
    """The (not yet connected) store a database URL names.

    postgresql://... or postgres://...  -> PostgresStore
    sqlite:///relative/path              -> SqliteStore at relative/path
    sqlite:////absolute/path             -> SqliteStore at /absolute/path
    None                                 -> SqliteStore at DEFAULT_SQLITE_PATH
    """
    if url is None:
        return SqliteStore(DEFAULT_SQLITE_PATH)
    if url.startswith(_POSTGRES_PREFIXES):
        return PostgresStore(url)
    if url.startswith(_SQLITE_PREFIX):
        path = url.removeprefix(_SQLITE_PREFIX)
        if not path or path == "/":
            raise ValueError("sqlite store URL has no file path; expected sqlite:///path/to/hub.db")
        return SqliteStore(path)
    raise ValueError(_unsupported_url_message(url))


def _unsupported_url_message(url: str) -> str:
    # Name only the scheme: the rest of a database URL may carry a password.
    scheme, separator, _ = url.partition(":")
    if not separator or not scheme:
        return "store URL has no scheme; expected postgresql://, postgres:// or sqlite:///path"
    if scheme == "sqlite":
        return "sqlite store URL must be sqlite:///relative/path or sqlite:////absolute/path"
    return f"unsupported store URL scheme {scheme!r}; expected postgresql, postgres or sqlite"
