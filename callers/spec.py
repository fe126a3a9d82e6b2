"""A provider described as data: its credential fields, options and capabilities.

The hub validates a credential against its provider's spec before sealing it, shows
the fields in its API, and builds the masked hint from `hint_source`. Nothing here
imports an SDK, so every spec can be read without any optional extra installed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from callers.base import Capability

FieldKind = Literal["string", "url", "json", "pem"]

# A PEM block: armour line, base64 body, matching end line (RFC 7468, leniently).
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----[A-Za-z0-9+/=\s:,-]+?-----END \1-----")
_PEM_ARMOUR = re.compile(r"-----(BEGIN|END) [A-Z0-9 ]+-----")


class InvalidCredentialField(ValueError):
    """One field of a credential is missing or malformed; never carries the value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field  # "secret.<name>" or "options.<name>"
        self.message = message


@dataclass(frozen=True, slots=True)
class CredentialField:
    name: str
    required: bool = False
    description: str = ""
    kind: FieldKind = "string"
    default: str | None = None
    choices: tuple[str, ...] = ()


def _check_value(where: str, declared: CredentialField, value: str) -> None:
    if not value.strip():
        raise InvalidCredentialField(where, "must not be empty")
    if declared.choices and value not in declared.choices:
        raise InvalidCredentialField(where, f"must be one of: {', '.join(declared.choices)}")
    if declared.kind == "url":
        if not _is_http_url(value):
            raise InvalidCredentialField(where, "must be an http(s) URL")
    elif declared.kind == "json":
        try:
            json.loads(value)
        except ValueError as exc:
            # exc.msg and position only: the document itself may be a private key.
            raise InvalidCredentialField(where, f"must be valid JSON ({exc})") from None
    elif declared.kind == "pem" and not _PEM_BLOCK.search(value):
        raise InvalidCredentialField(where, "must be a PEM block (-----BEGIN ...----- ... -----END ...-----)")


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and value == value.strip()


def _check_section(section: str, fields: tuple[CredentialField, ...], values: Mapping[str, str]) -> None:
    known = {f.name for f in fields}
    for name in values:
        if name not in known:
            expected = ", ".join(sorted(known)) or "none"
            raise InvalidCredentialField(f"{section}.{name}", f"unknown field (expected: {expected})")
    for declared in fields:
        where = f"{section}.{declared.name}"
        if declared.name in values:
            _check_value(where, declared, values[declared.name])
        elif declared.required and declared.default is None:
            raise InvalidCredentialField(where, "required")


@dataclass(frozen=True, slots=True)
class SpeechFormats:
    """What a speech provider takes and gives natively, for the README's speech table.

    Any format the hub accepts reaches any provider, and any output format the hub
    offers comes back from any provider: the caller converts (callers.audio) where
    the provider lacks it. These say where no conversion happens. Free text, short.
    """

    stt_input: str = ""  # e.g. "wav, mp3, flac, ogg/opus; linear16/mulaw raw at any rate"
    tts_output: str = ""  # e.g. "mp3, ogg/opus, wav 24 kHz, linear16 24 kHz"


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    display_name: str
    secret_fields: tuple[CredentialField, ...]
    # The secret field the masked hint is made from. When a provider accepts one of
    # several alternative secrets (twilio), the first alternative present is used;
    # "" for a provider without secret fields (local).
    hint_field: str
    option_fields: tuple[CredentialField, ...] = ()
    # Capabilities default to none: a provider opts in to each one it implements.
    capabilities: frozenset[Capability] = frozenset()
    # Rules across fields (e.g. "this secret or that pair"); raises InvalidCredentialField.
    extra_validation: Callable[[Mapping[str, str], Mapping[str, str]], None] | None = None
    # Top-level modules of the SDK the capability modules import (e.g. ("openai",)), so
    # that the hub can report whether the extra is installed without importing it.
    sdk_modules: tuple[str, ...] = ()
    # Speech providers: their native formats (README's speech table).
    speech_formats: SpeechFormats | None = None

    def __post_init__(self) -> None:
        # A malformed spec is a programming error in this package: fail at import.
        secret_names = [f.name for f in self.secret_fields]
        option_names = [f.name for f in self.option_fields]
        for kind, names in (("secret", secret_names), ("option", option_names)):
            if len(set(names)) != len(names):
                raise ValueError(f"{self.name}: duplicate {kind} field names {names}")
        # A provider that holds no secret (a model run in-process) has no field to hint from.
        if secret_names and self.hint_field not in secret_names:
            raise ValueError(f"{self.name}: hint_field {self.hint_field!r} is not a secret field")
        if not secret_names and self.hint_field:
            raise ValueError(f"{self.name}: hint_field {self.hint_field!r} names no field: there are none")
        for f in (*self.secret_fields, *self.option_fields):
            if f.default is not None and f.choices and f.default not in f.choices:
                raise ValueError(f"{self.name}: default of {f.name!r} is not one of its choices")

    @property
    def extra(self) -> str:
        """The pip extra that installs this provider's SDK: always the provider's name."""
        return self.name

    def validate(self, secret: Mapping[str, str], options: Mapping[str, str]) -> None:
        """Raise InvalidCredentialField for the first problem found; return if valid."""
        _check_section("secret", self.secret_fields, secret)
        _check_section("options", self.option_fields, options)
        if self.extra_validation is not None:
            self.extra_validation(secret, options)

    def with_defaults(self, options: Mapping[str, str]) -> dict[str, str]:
        """The options with every unset option that has a default filled in."""
        filled = {f.name: f.default for f in self.option_fields if f.default is not None}
        filled.update(options)
        return filled

    def hint_source(self, secret: Mapping[str, str]) -> str:
        """The text the hub masks into a hint; "" when the credential holds no secret.

        A JSON secret (a Google service account) yields its client_email, and a PEM key
        its base64 body, so that the hint's visible characters mean something.
        """
        by_name = {f.name: f for f in self.secret_fields}
        candidates = [self.hint_field, *(n for n in by_name if n != self.hint_field)]
        present = next((n for n in candidates if secret.get(n)), None)
        if present is None:
            return ""
        value = secret[present]
        kind = by_name[present].kind
        if kind == "json":
            return _client_email(f"secret.{present}", value)
        if kind == "pem":
            return "".join(_PEM_ARMOUR.sub("", value).split())
        return value


def _client_email(where: str, raw: str) -> str:
    try:
        document = json.loads(raw)
    except ValueError:
        raise InvalidCredentialField(where, "must be valid JSON") from None
    email = document.get("client_email") if isinstance(document, dict) else None
    if not isinstance(email, str) or not email:
        raise InvalidCredentialField(where, "service account JSON has no client_email")
    return email
