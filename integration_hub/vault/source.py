"""The current keyring of a long-running process, reloaded when its file changes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from integration_hub.vault.errors import KeyringError
from integration_hub.vault.keyring import Keyring, load_with_status

# What identifies one version of the file: a rename-over (Keyring.save) changes the inode, an
# in-place edit changes the size or mtime.
_FileSignature = tuple[int, int, int, int]


def _signature_of(status: os.stat_result) -> _FileSignature:
    return (status.st_mtime_ns, status.st_size, status.st_ino, status.st_dev)


class KeyringSource:
    """Holds the current Keyring for a long-running process and reloads the file when it changes.

    current() looks at the file's mtime_ns/size/inode at most once per `check_interval` seconds;
    reload() reads it unconditionally. If a reload fails (bad mode, malformed file), the last good
    keyring stays current and the error is exposed in `last_error` until a reload succeeds.
    """

    def __init__(self, path: str | os.PathLike[str], check_interval: float = 1.0) -> None:
        self._path = Path(path)
        self._check_interval = check_interval
        self._lock = threading.Lock()
        # The first load raises: a process must not start without a keyring.
        keyring, status = load_with_status(self._path)
        self._keyring = keyring
        self._loaded_signature = _signature_of(status)
        self._next_check = time.monotonic() + check_interval
        self.last_error: str | None = None

    def current(self) -> Keyring:
        if time.monotonic() >= self._next_check:
            with self._lock:
                # Another thread may have checked while this one waited for the lock.
                if time.monotonic() >= self._next_check:
                    self._reload_if_changed()
        return self._keyring

    def reload(self) -> Keyring:
        """Read the file now; returns the keyring that is current afterwards (the old one on failure)."""
        with self._lock:
            self._load()
        return self._keyring

    def _reload_if_changed(self) -> None:
        try:
            signature = _signature_of(os.stat(self._path))
        except OSError as error:
            self._fail(f"keyring file {self._path} cannot be checked: {error.strerror or error}")
            return
        # Compared with the last file that loaded, not the last file seen: while the file is
        # broken every check retries, so a fix that keeps mtime/size/inode (chmod 600) is noticed.
        if signature == self._loaded_signature:
            self.last_error = None
            self._schedule_next_check()
        else:
            self._load()

    def _load(self) -> None:
        try:
            keyring, status = load_with_status(self._path)
        except KeyringError as error:
            self._fail(str(error))
            return
        self._keyring = keyring
        self._loaded_signature = _signature_of(status)
        self.last_error = None
        self._schedule_next_check()

    def _fail(self, message: str) -> None:
        self.last_error = message
        self._schedule_next_check()

    def _schedule_next_check(self) -> None:
        self._next_check = time.monotonic() + self._check_interval
