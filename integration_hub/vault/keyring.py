"""The keyring: 256-bit key-encryption keys with integer ids, exactly one of them primary.

The keyring is immutable: rotate() and retire() return a new Keyring, so a Keyring object that
a request picked up keeps meaning the same thing for the whole request.

File format (JSON, mode 0600 or stricter):

    {
      "format": 1,
      "keys": [
        {"id": 1, "state": "retired", "created_at": "...", "retired_at": "..."},
        {"id": 2, "state": "active",  "created_at": "...", "material": "<base64, 32 bytes>"},
        {"id": 3, "state": "primary", "created_at": "...", "material": "<base64, 32 bytes>"}
      ]
    }

There is no default key and no plaintext fallback: without a loadable keyring nothing is sealed
or opened.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Literal, NoReturn

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from integration_hub.vault._aead import KEY_BYTES
from integration_hub.vault._files import read_private_file, write_private_file_atomically
from integration_hub.vault.errors import KeyringError

# KeyringError is re-exported: callers of load()/retire() catch it from here too.
__all__ = [
    "KeyInfo",
    "KeyState",
    "Keyring",
    "KeyringError",
    "format_key_id",
    "load_with_status",
    "parse_key_id",
]

KeyState = Literal["primary", "active", "retired"]

FILE_FORMAT = 1
# Key ids travel in the sealed blob's header as an unsigned 32-bit integer.
MAX_KEY_ID = 2**32 - 1

_KEY_STATES: tuple[KeyState, ...] = ("primary", "active", "retired")
_KEY_ID_TEXT = re.compile(r"k?([1-9][0-9]*)")


def format_key_id(key_id: int) -> str:
    """The form shown to humans: 3 -> "k3"."""
    return f"k{key_id}"


def parse_key_id(text: str) -> int:
    """Accept "k3" or "3"; anything else is a KeyringError."""
    match = _KEY_ID_TEXT.fullmatch(text)
    if match is None:
        raise KeyringError(f"{text!r} is not a key id; expected a form like k3 or 3")
    key_id = int(match.group(1))
    if key_id > MAX_KEY_ID:
        raise KeyringError(f"key id {text!r} is out of range (at most {MAX_KEY_ID})")
    return key_id


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: everything except its material."""

    id: int
    state: KeyState
    created_at: datetime
    retired_at: datetime | None


@dataclass(frozen=True, slots=True)
class _KeyEntry:
    id: int
    created_at: datetime
    # None once the key is retired: the bytes are gone, so the key can open nothing.
    material: bytes | None = field(repr=False)
    retired_at: datetime | None = None


class Keyring:
    """An immutable set of key-encryption keys. Build one with generate() or load()."""

    __slots__ = ("_entries", "_primary_id")
    _entries: Mapping[int, _KeyEntry]
    _primary_id: int

    def __init__(self, entries: Iterable[_KeyEntry], primary_id: int) -> None:
        by_id = _index_by_id(entries)
        _require_usable_primary(by_id, primary_id)
        object.__setattr__(self, "_entries", MappingProxyType(dict(sorted(by_id.items()))))
        object.__setattr__(self, "_primary_id", primary_id)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Keyring is immutable; rotate() and retire() return a new Keyring")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Keyring is immutable; rotate() and retire() return a new Keyring")

    def __repr__(self) -> str:
        # Ids and states only: key material must never reach a log line or a traceback.
        keys = ", ".join(f"{format_key_id(info.id)}:{info.state}" for info in self.keys())
        return f"Keyring(primary={format_key_id(self._primary_id)}, keys=[{keys}])"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        # A pickle would carry raw key material into caches, queues or crash dumps; the keyring
        # file (0600, atomic) is the only way key material leaves the process.
        raise TypeError("Keyring cannot be pickled; use save() to persist it")

    def __copy__(self) -> Keyring:
        return self  # immutable: a copy would be indistinguishable

    def __deepcopy__(self, memo: object) -> Keyring:
        return self

    # --- construction --------------------------------------------------------

    @classmethod
    def generate(cls) -> Keyring:
        """A keyring holding one fresh primary key, id 1."""
        return cls([_fresh_entry(1)], primary_id=1)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keyring:
        """Read a keyring file; refuses files that group or others can access."""
        keyring, _ = load_with_status(Path(path))
        return keyring

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the keyring atomically with mode 0600, replacing any file at `path`."""
        document = json.dumps(self._to_document(), indent=2) + "\n"
        write_private_file_atomically(Path(path), document.encode("utf-8"))

    # --- changes (each returns a new Keyring) -------------------------------------

    def rotate(self) -> Keyring:
        """A new keyring with a fresh key (id = max id + 1) as primary; the old primary stays active."""
        new_id = max(self._entries) + 1
        if new_id > MAX_KEY_ID:
            raise KeyringError(f"cannot rotate: key ids are exhausted (the largest is {MAX_KEY_ID})")
        return Keyring([*self._entries.values(), _fresh_entry(new_id)], primary_id=new_id)

    def retire(self, key_id: int) -> Keyring:
        """A new keyring in which `key_id` keeps only its id and dates; its material is deleted."""
        entry = self._entries.get(key_id)
        name = format_key_id(key_id)
        if entry is None:
            raise KeyringError(f"cannot retire {name}: unknown key id (keyring has {self._id_list()})")
        if key_id == self._primary_id:
            raise KeyringError(f"cannot retire {name}: it is the primary key; rotate first")
        if entry.material is None:
            raise KeyringError(f"cannot retire {name}: it is already retired")
        # Python cannot wipe the old bytes object; the new Keyring simply holds no reference to it,
        # and the saved file no longer contains it.
        retired = replace(entry, material=None, retired_at=_now())
        others = [other for other in self._entries.values() if other.id != key_id]
        return Keyring([*others, retired], primary_id=self._primary_id)

    # --- inspection -------------------------------------------------------------

    @property
    def primary_id(self) -> int:
        return self._primary_id

    def keys(self) -> list[KeyInfo]:
        """Every key, ordered by id, without material."""
        return [
            KeyInfo(
                id=entry.id,
                state=self._state_of(entry),
                created_at=entry.created_at,
                retired_at=entry.retired_at,
            )
            for entry in self._entries.values()
        ]

    def has_usable_key(self, key_id: int) -> bool:
        """True when `key_id` is in the ring and not retired, i.e. it can open ciphertexts."""
        entry = self._entries.get(key_id)
        return entry is not None and entry.material is not None

    # --- package-internal accessors for sealing -------------------------------------

    def _sealing_key(self) -> tuple[int, bytes]:
        material = self._entries[self._primary_id].material
        # The constructor refuses a retired primary; this check only narrows the type for mypy.
        if material is None:
            raise KeyringError(f"primary key {format_key_id(self._primary_id)} is retired")
        return self._primary_id, material

    def _lookup(self, key_id: int) -> _KeyEntry | None:
        return self._entries.get(key_id)

    # --- helpers -----------------------------------------------------------------

    def _state_of(self, entry: _KeyEntry) -> KeyState:
        if entry.material is None:
            return "retired"
        return "primary" if entry.id == self._primary_id else "active"

    def _id_list(self) -> str:
        return ", ".join(format_key_id(key_id) for key_id in self._entries)

    def _to_document(self) -> dict[str, object]:
        return {
            "format": FILE_FORMAT,
            "keys": [_entry_to_json(entry, self._state_of(entry)) for entry in self._entries.values()],
        }


# --- invariants (checked for every Keyring, however it was built) ----------------------


def _index_by_id(entries: Iterable[_KeyEntry]) -> dict[int, _KeyEntry]:
    by_id: dict[int, _KeyEntry] = {}
    for entry in entries:
        name = format_key_id(entry.id)
        if not 1 <= entry.id <= MAX_KEY_ID:
            raise KeyringError(f"key id {entry.id} is out of range (1..{MAX_KEY_ID})")
        if entry.id in by_id:
            raise KeyringError(f"key id {name} appears more than once")
        _require_consistent_entry(entry)
        by_id[entry.id] = entry
    if not by_id:
        raise KeyringError("keyring has no keys")
    return by_id


def _require_consistent_entry(entry: _KeyEntry) -> None:
    name = format_key_id(entry.id)
    if entry.material is None:
        if entry.retired_at is None:
            raise KeyringError(f"key {name} has no material and no retired_at")
        return
    if entry.retired_at is not None:
        raise KeyringError(f"key {name} has a retired_at but still holds material")
    if len(entry.material) != KEY_BYTES:
        raise KeyringError(
            f"key {name} is {len(entry.material)} bytes; key-encryption keys must be {KEY_BYTES} bytes"
        )


def _require_usable_primary(by_id: Mapping[int, _KeyEntry], primary_id: int) -> None:
    name = format_key_id(primary_id)
    primary = by_id.get(primary_id)
    if primary is None:
        raise KeyringError(f"keyring has no usable primary key: primary {name} is not in the keyring")
    if primary.material is None:
        raise KeyringError(f"keyring has no usable primary key: primary {name} is retired")


def _fresh_entry(key_id: int) -> _KeyEntry:
    return _KeyEntry(id=key_id, created_at=_now(), material=AESGCM.generate_key(bit_length=256))


def _now() -> datetime:
    return datetime.now(UTC)


# --- the file ---------------------------------------------------------------------


def load_with_status(path: Path) -> tuple[Keyring, os.stat_result]:
    """Load a keyring file and return it with the file status it was read under.

    KeyringSource uses the status to notice later changes to the file it actually loaded.
    """
    raw, status = read_private_file(path)
    try:
        return _parse_document(raw), status
    except KeyringError as error:
        raise KeyringError(f"keyring file {path}: {error}") from None


def _entry_to_json(entry: _KeyEntry, state: KeyState) -> dict[str, object]:
    document: dict[str, object] = {
        "id": entry.id,
        "state": state,
        "created_at": entry.created_at.isoformat(),
    }
    if entry.material is not None:
        document["material"] = base64.b64encode(entry.material).decode("ascii")
    if entry.retired_at is not None:
        document["retired_at"] = entry.retired_at.isoformat()
    return document


def _parse_document(raw: bytes) -> Keyring:
    document = _decode_json(raw)
    if not isinstance(document, dict):
        raise KeyringError("the top level must be a JSON object")
    if document.get("format") != FILE_FORMAT:
        raise KeyringError(f"unsupported format {document.get('format')!r}; expected {FILE_FORMAT}")
    items = document.get("keys")
    if not isinstance(items, list) or not items:
        raise KeyringError('"keys" must be a non-empty list')
    parsed = [_parse_entry(item, position) for position, item in enumerate(items)]
    primary_id = _single_primary_id(parsed)
    return Keyring([entry for entry, _ in parsed], primary_id=primary_id)


def _decode_json(raw: bytes) -> object:
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise KeyringError("is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        # Position only: the message must not quote the document, which holds key material.
        raise KeyringError(
            f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None


def _single_primary_id(parsed: list[tuple[_KeyEntry, KeyState]]) -> int:
    primaries = [entry.id for entry, state in parsed if state == "primary"]
    if not primaries:
        raise KeyringError('keyring has no primary key: exactly one key must have state "primary"')
    if len(primaries) > 1:
        names = ", ".join(format_key_id(key_id) for key_id in primaries)
        raise KeyringError(f"keyring has more than one primary key ({names}); exactly one must be primary")
    return primaries[0]


def _parse_entry(item: object, position: int) -> tuple[_KeyEntry, KeyState]:
    where = f"keys[{position}]"
    if not isinstance(item, dict):
        raise KeyringError(f"{where} must be a JSON object")
    key_id = _parse_id(item.get("id"), where)
    where = f"key {format_key_id(key_id)}"
    state = _parse_state(item.get("state"), where)
    created_at = _parse_time(item.get("created_at"), f"{where} created_at")
    if state == "retired":
        if "material" in item:
            raise KeyringError(f"{where} is retired but the file still holds its material; remove it")
        retired_at = _parse_time(item.get("retired_at"), f"{where} retired_at")
        return _KeyEntry(id=key_id, created_at=created_at, material=None, retired_at=retired_at), state
    if item.get("retired_at") is not None:
        raise KeyringError(f'{where} has a retired_at but its state is "{state}"')
    material = _parse_material(item.get("material"), where)
    return _KeyEntry(id=key_id, created_at=created_at, material=material), state


def _parse_id(value: object, where: str) -> int:
    # bool is an int subclass in Python; `true` is not a key id.
    if not isinstance(value, int) or isinstance(value, bool):
        raise KeyringError(f"{where} has no integer id")
    if not 1 <= value <= MAX_KEY_ID:
        raise KeyringError(f"{where} has id {value}, out of range (1..{MAX_KEY_ID})")
    return value


def _parse_state(value: object, where: str) -> KeyState:
    for state in _KEY_STATES:
        if value == state:
            return state
    raise KeyringError(f"{where} has state {value!r}; expected one of {', '.join(_KEY_STATES)}")


def _parse_time(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise KeyringError(f"{where} is missing (expected an ISO 8601 timestamp)")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise KeyringError(f"{where} {value!r} is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise KeyringError(f"{where} {value!r} has no timezone")
    return moment


def _parse_material(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise KeyringError(f"{where} has no material (expected base64 of {KEY_BYTES} bytes)")
    try:
        material = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise KeyringError(f"{where} material is not valid base64") from None
    # Its length is checked by the Keyring constructor, like every other invariant.
    return material
