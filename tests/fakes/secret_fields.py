"""A SecretFields over a plain dict: what the hub's vault Secret looks like to a caller."""

from __future__ import annotations


class PlainSecret:
    def __init__(self, **fields: str) -> None:
        self._fields = dict(fields)

    def reveal(self, name: str) -> str:
        return self._fields[name]

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._fields.get(name, default)

    def field_names(self) -> tuple[str, ...]:
        return tuple(self._fields)
