"""Reading and writing the keyring file: owner-only permissions, atomic replacement."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from integration_hub.vault.errors import KeyringError

PRIVATE_FILE_MODE = 0o600


def read_private_file(path: Path) -> tuple[bytes, os.stat_result]:
    """Read a file that only its owner may access; return its bytes and the status it was read with.

    The mode is checked on the open descriptor (fstat), not by a separate stat of the path, so the
    file that was checked is the file that was read even if the path is replaced in between.
    """
    descriptor = _open_for_reading(path)
    try:
        status = os.fstat(descriptor)
        _require_private_regular_file(path, status)
    except BaseException:
        os.close(descriptor)
        raise
    with os.fdopen(descriptor, "rb") as file:
        return file.read(), status


def write_private_file_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old file or the new one, never a mix.

    The temporary file is created 0600 from the start (never briefly readable by others), in the
    same directory so that os.replace is an atomic rename on the same filesystem.
    """
    directory = path.parent
    temporary = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        _write_new_file_synced(temporary, data)
        os.replace(temporary, path)
        _fsync_directory(directory)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise KeyringError(f"cannot save keyring to {path}: {error.strerror or error}") from error


def _open_for_reading(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyringError(f"keyring file {path} does not exist") from None
    except PermissionError:
        raise KeyringError(f"keyring file {path} is not readable by this process") from None
    except OSError as error:
        raise KeyringError(f"keyring file {path} cannot be opened: {error.strerror or error}") from None


def _require_private_regular_file(path: Path, status: os.stat_result) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise KeyringError(f"keyring file {path} is not a regular file")
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o077:
        raise KeyringError(
            f"keyring file {path} has mode {mode:04o}, which lets group or others access it; "
            f"it must be 0600 or stricter (chmod 600 {path})"
        )


def _write_new_file_synced(path: Path, data: bytes) -> None:
    # O_EXCL: never write through a file (or symlink) someone else put at the temporary name.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync_directory(directory: Path) -> None:
    # The rename is only durable once the directory entry itself reaches the disk.
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
