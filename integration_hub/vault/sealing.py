"""Sealing credentials with AES-256-GCM under the keyring's primary key.

Blob layout (format version 1):

    byte 0       format version (1)
    bytes 1..4   key id, uint32 big-endian
    bytes 5..16  96-bit random nonce
    bytes 17..   ciphertext || 128-bit tag

Each credential is sealed directly under a keyring key, with no per-credential data key.
Secrets are tiny and the keyring keys live in this process anyway, so an envelope layer would
add a second key and a second failure mode without reducing exposure. The moment to add
envelope encryption is when the key-encryption key moves into a KMS/HSM and can no longer be
used locally.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag

from integration_hub.vault import _aead
from integration_hub.vault.errors import OpenError, OpenFailure
from integration_hub.vault.keyring import Keyring

# OpenError and OpenFailure are re-exported: callers of open_sealed() catch them from here too.
__all__ = [
    "ENCRYPTION_WARNING_THRESHOLD",
    "FORMAT_VERSION",
    "NONCE_BOUND",
    "OpenError",
    "OpenFailure",
    "SealContext",
    "key_id_of",
    "open_sealed",
    "seal",
]

FORMAT_VERSION = 1

# A key used with random 96-bit nonces must not seal more than 2**32 messages (NIST SP 800-38D
# section 8.3): beyond that, the chance of a repeated nonce, which breaks GCM, is no longer negligible.
NONCE_BOUND = 2**32
# Warn (and rotate) well before the bound, leaving room for encryptions in flight on other replicas.
ENCRYPTION_WARNING_THRESHOLD = 2**30

_HEADER = struct.Struct(">BI12s")  # version, key id, nonce
_MINIMUM_BLOB_BYTES = _HEADER.size + _aead.TAG_BYTES


@dataclass(frozen=True, slots=True)
class SealContext:
    """The row a ciphertext belongs to; bound into it as associated data."""

    tenant_id: str
    credential_id: str
    provider: str

    def __post_init__(self) -> None:
        # Spelled out rather than looped over dataclasses.fields(): this runs on every open.
        for name, value in (
            ("tenant_id", self.tenant_id),
            ("credential_id", self.credential_id),
            ("provider", self.provider),
        ):
            if not isinstance(value, str):
                raise TypeError(f"SealContext.{name} must be a str")


@dataclass(frozen=True, slots=True)
class _Header:
    version: int
    key_id: int
    nonce: bytes


def seal(keyring: Keyring, plaintext: bytes, context: SealContext) -> bytes:
    """Encrypt `plaintext` under the keyring's primary key, bound to `context`, with a fresh nonce."""
    key_id, key = keyring._sealing_key()
    nonce = os.urandom(_aead.NONCE_BYTES)
    header = _HEADER.pack(FORMAT_VERSION, key_id, nonce)
    associated_data = _associated_data(FORMAT_VERSION, key_id, context)
    return header + _aead.encrypt(key, nonce, plaintext, associated_data)


def open_sealed(keyring: Keyring, blob: bytes, context: SealContext) -> bytes:
    """Decrypt a blob made by seal() for the same context; any failure raises OpenError."""
    header = _parse_header(blob)
    key = _opening_key(keyring, header.key_id)
    associated_data = _associated_data(header.version, header.key_id, context)
    try:
        return _aead.decrypt(key, header.nonce, blob[_HEADER.size :], associated_data)
    except InvalidTag:
        raise OpenError(OpenFailure.AUTHENTICATION_FAILED) from None


def key_id_of(blob: bytes) -> int:
    """The id of the key a blob was sealed under, read from its header (nothing is decrypted)."""
    return _parse_header(blob).key_id


def _parse_header(blob: bytes) -> _Header:
    if not blob:
        raise OpenError(OpenFailure.MALFORMED)
    # The version comes first: a later format may lay out the rest differently.
    if blob[0] != FORMAT_VERSION:
        raise OpenError(OpenFailure.UNKNOWN_VERSION)
    if len(blob) < _MINIMUM_BLOB_BYTES:
        raise OpenError(OpenFailure.MALFORMED)
    version, key_id, nonce = _HEADER.unpack_from(blob)
    return _Header(version=version, key_id=key_id, nonce=nonce)


def _opening_key(keyring: Keyring, key_id: int) -> bytes:
    # The header names the key. Trying every key in turn would cost one decryption per key and
    # would let a blob under a retired or foreign key be tested against all of them.
    entry = keyring._lookup(key_id)
    if entry is None:
        raise OpenError(OpenFailure.UNKNOWN_KEY)
    if entry.material is None:
        raise OpenError(OpenFailure.RETIRED_KEY)
    return entry.material


def _associated_data(version: int, key_id: int, context: SealContext) -> bytes:
    """Bind the header and the row: version, key id, tenant, credential and provider.

    Every field is length-prefixed so that no two different contexts serialise to the same bytes
    (("ab", "c") and ("a", "bc") would collide if the fields were simply concatenated).
    """
    tenant = context.tenant_id.encode("utf-8")
    credential = context.credential_id.encode("utf-8")
    provider = context.provider.encode("utf-8")
    return b"".join(
        (
            _LENGTH_1,
            bytes([version]),
            _LENGTH_4,
            key_id.to_bytes(4, "big"),
            len(tenant).to_bytes(4, "big"),
            tenant,
            len(credential).to_bytes(4, "big"),
            credential,
            len(provider).to_bytes(4, "big"),
            provider,
        )
    )


# The length prefixes of the two fixed-size parts (version: 1 byte, key id: 4 bytes).
_LENGTH_1 = (1).to_bytes(4, "big")
_LENGTH_4 = (4).to_bytes(4, "big")
