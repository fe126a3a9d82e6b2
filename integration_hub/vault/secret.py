"""The opened secret fields of one credential, and masked hints for display."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import NoReturn, final

from integration_hub.vault.redaction import register_secret

# Longest first, so "sk-ant-..." is not shown as merely "sk-...".
_KNOWN_PREFIXES = tuple(
    sorted(
        ("sk-ant-", "sk-proj-", "sk-or-v1-", "sk-", "AKIA", "AIza", "gsk_", "r8_", "hf_", "xai-"),
        key=len,
        reverse=True,
    )
)
# Below this many characters, even 4 of them are too large a share of the secret to show.
_MIN_HINTED_LENGTH = 12
_HINT_TAIL = 4
_FULLY_MASKED = "****"


def mask_hint(value: str) -> str:
    """A display hint such as "sk-...a1b2": the known type prefix, if any, and the last 4 characters.

    The part after the prefix must itself be at least 12 characters long, otherwise the hint would
    show most of a short secret ("sk-ant-" + "abcde" would reveal 4 of 5 secret characters).
    """
    prefix = next((known for known in _KNOWN_PREFIXES if value.startswith(known)), "")
    if len(value) - len(prefix) < _MIN_HINTED_LENGTH:
        return _FULLY_MASKED
    return f"{prefix}...{value[-_HINT_TAIL:]}"


@final
class Secret:
    """The opened secret fields of one credential, e.g. {"api_key": "sk-..."}; lives only for one call.

    Built to be hard to leak by accident: repr/str/format show field names only; it cannot be
    pickled, copied or JSON-serialised; equality is identity, never a comparison of values. Every
    value of 8 characters or more is registered for log redaction as soon as the Secret exists.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, str], *, registered: bool = False) -> None:
        """`registered`: the values are known to be registered for redaction already (the
        vault opening a ciphertext it has opened before), so the fingerprints are not
        computed again."""
        checked: dict[str, str] = {}
        for name, value in fields.items():
            if not isinstance(name, str) or not isinstance(value, str):
                # Name the field, never echo the value.
                raise TypeError(f"secret field {name!r} must map a str name to a str value")
            checked[name] = value
        if not registered:
            for value in checked.values():
                register_secret(value)
        self._fields = checked

    # --- reading ---------------------------------------------------------------------

    def reveal(self, name: str) -> str:
        """The value of field `name`; a KeyError naming the field (not any value) if absent."""
        try:
            return self._fields[name]
        except KeyError:
            raise KeyError(
                f"secret has no field {name!r} (fields: {', '.join(self.field_names()) or 'none'})"
            ) from None

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._fields.get(name, default)

    def field_names(self) -> tuple[str, ...]:
        return tuple(sorted(self._fields))

    # --- sealing format ----------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, compact, UTF-8): the plaintext that gets sealed."""
        text = json.dumps(self._fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, *, registered: bool = False) -> Secret:
        """Parse what to_bytes() produced; errors describe the shape, never the content."""
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            # `from None`: JSONDecodeError keeps the whole document (the secret) in its .doc.
            raise ValueError("secret payload is not UTF-8 JSON") from None
        if not isinstance(document, dict):
            raise ValueError("secret payload must be a JSON object")
        if not all(isinstance(value, str) for value in document.values()):
            raise ValueError("every secret field value must be a string")
        return cls(document, registered=registered)

    # --- leak guards -------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Secret(fields={list(self.field_names())!r})"

    def __str__(self) -> str:
        return repr(self)

    def __format__(self, format_spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        # Identity only: value equality invites `secret == candidate` checks, which are not
        # constant-time, and makes two credentials "equal" in ways callers should not rely on.
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret cannot be pickled")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("Secret cannot be pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError("Secret cannot be copied")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("Secret cannot be copied")

    def __getstate__(self) -> NoReturn:
        raise TypeError("Secret cannot be pickled")
