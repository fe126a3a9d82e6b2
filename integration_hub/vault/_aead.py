"""The AES-256-GCM primitive the sealing layer is built on.

Package-internal: it takes an explicit nonce so that it can be checked against published
test vectors (Wycheproof). The public `seal` never accepts a nonce; it always draws a fresh
random one, because a repeated (key, nonce) pair breaks GCM's confidentiality and integrity.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96 bits: GCM's native nonce size, no GHASH-derived counter
TAG_BYTES = 16  # 128-bit tag, appended to the ciphertext by AESGCM


# AESGCM objects by key: building one sets up the key schedule, which costs more than
# opening a small secret. Keys live in this process anyway (the keyring); the bound keeps
# keys retired and forgotten by the keyring from lingering here beyond a few rotations.
_CIPHERS: dict[bytes, AESGCM] = {}
_MAX_CIPHERS = 16


def _cipher(key: bytes) -> AESGCM:
    cipher = _CIPHERS.get(key)
    if cipher is None:
        if len(_CIPHERS) >= _MAX_CIPHERS:
            _CIPHERS.clear()
        cipher = _CIPHERS[key] = AESGCM(key)
    return cipher


def encrypt(key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """Return ciphertext || tag."""
    _check_sizes(key, nonce)
    return _cipher(key).encrypt(nonce, plaintext, associated_data)


def decrypt(key: bytes, nonce: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    """Open ciphertext || tag; raises cryptography.exceptions.InvalidTag when authentication fails."""
    _check_sizes(key, nonce)
    return _cipher(key).decrypt(nonce, sealed, associated_data)


def _check_sizes(key: bytes, nonce: bytes) -> None:
    # AESGCM itself also accepts 128/192-bit keys and other nonce sizes; the vault allows neither.
    if len(key) != KEY_BYTES:
        raise ValueError(f"AES-256-GCM needs a {KEY_BYTES}-byte key, got {len(key)} bytes")
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"the vault uses {NONCE_BYTES}-byte nonces, got {len(nonce)} bytes")
