"""Sealing and opening: blob layout, row binding, tampering, key selection, rotation, retirement."""

from __future__ import annotations

import pickle
import struct
from dataclasses import replace

import pytest

from integration_hub.vault import (
    FORMAT_VERSION,
    Keyring,
    OpenError,
    OpenFailure,
    SealContext,
    _aead,
    key_id_of,
    open_sealed,
    seal,
)
from integration_hub.vault.sealing import _associated_data

PLAINTEXT = b'{"api_key":"sk-test-0123456789abcdef"}'
HEADER_BYTES = 1 + 4 + 12
TAG_BYTES = 16


def _with_key_id(blob: bytes, key_id: int) -> bytes:
    return blob[:1] + key_id.to_bytes(4, "big") + blob[5:]


def _open_failure(keyring: Keyring, blob: bytes, context: SealContext) -> OpenFailure:
    with pytest.raises(OpenError) as raised:
        open_sealed(keyring, blob, context)
    assert str(raised.value) == "credential could not be opened"
    return raised.value.cause


# --- layout -------------------------------------------------------------------------


def test_round_trip(keyring: Keyring, context: SealContext) -> None:
    assert open_sealed(keyring, seal(keyring, PLAINTEXT, context), context) == PLAINTEXT


def test_blob_layout_is_version_key_id_nonce_ciphertext_tag(keyring: Keyring, context: SealContext) -> None:
    blob = seal(keyring, PLAINTEXT, context)

    assert blob[0] == FORMAT_VERSION == 1
    assert struct.unpack(">I", blob[1:5]) == (keyring.primary_id,)
    assert len(blob) == HEADER_BYTES + len(PLAINTEXT) + TAG_BYTES
    assert key_id_of(blob) == keyring.primary_id


def test_each_seal_draws_a_fresh_nonce(keyring: Keyring, context: SealContext) -> None:
    nonces = {seal(keyring, PLAINTEXT, context)[5:17] for _ in range(64)}
    assert len(nonces) == 64


def test_opens_a_blob_built_by_hand_from_the_documented_format() -> None:
    # Pins the format independently of seal(): rows written today must open after refactors.
    keyring = Keyring.generate()
    key_id, key = keyring._sealing_key()
    context = SealContext(tenant_id="t", credential_id="c", provider="p")
    nonce = bytes(range(12))
    associated_data = (
        b"\x00\x00\x00\x01" + b"\x01"
        + b"\x00\x00\x00\x04" + key_id.to_bytes(4, "big")
        + b"\x00\x00\x00\x01" + b"t"
        + b"\x00\x00\x00\x01" + b"c"
        + b"\x00\x00\x00\x01" + b"p"
    )  # fmt: skip
    assert _associated_data(1, key_id, context) == associated_data
    blob = b"\x01" + key_id.to_bytes(4, "big") + nonce + _aead.encrypt(key, nonce, b"hello", associated_data)

    assert open_sealed(keyring, blob, context) == b"hello"


def test_empty_plaintext_round_trips(keyring: Keyring, context: SealContext) -> None:
    assert open_sealed(keyring, seal(keyring, b"", context), context) == b""


def test_context_fields_must_be_strings() -> None:
    with pytest.raises(TypeError, match="tenant_id"):
        SealContext(tenant_id=7, credential_id="c", provider="p")  # type: ignore[arg-type]


# --- the ciphertext is bound to its row ---------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"credential_id": "cred-2"},
        {"tenant_id": "tenant-b"},
        {"provider": "anthropic"},
    ],
    ids=["row-swap", "tenant-swap", "provider-swap"],
)
def test_blob_copied_into_another_row_does_not_open(
    keyring: Keyring, context: SealContext, change: dict[str, str]
) -> None:
    blob = seal(keyring, PLAINTEXT, context)
    assert _open_failure(keyring, blob, replace(context, **change)) is OpenFailure.AUTHENTICATION_FAILED


def test_another_keyrings_blob_does_not_open(context: SealContext) -> None:
    blob = seal(Keyring.generate(), PLAINTEXT, context)
    assert _open_failure(Keyring.generate(), blob, context) is OpenFailure.AUTHENTICATION_FAILED


# --- tampering and truncation ---------------------------------------------------------------


def test_flipping_any_bit_of_any_byte_breaks_opening(keyring: Keyring, context: SealContext) -> None:
    blob = seal(keyring, PLAINTEXT, context)
    for position in range(len(blob)):
        for bit in range(8):
            tampered = bytearray(blob)
            tampered[position] ^= 1 << bit
            with pytest.raises(OpenError):
                open_sealed(keyring, bytes(tampered), context)


def test_every_truncation_breaks_opening(keyring: Keyring, context: SealContext) -> None:
    blob = seal(keyring, PLAINTEXT, context)
    for length in range(len(blob)):
        with pytest.raises(OpenError):
            open_sealed(keyring, blob[:length], context)


def test_truncation_below_header_and_tag_is_malformed(keyring: Keyring, context: SealContext) -> None:
    blob = seal(keyring, b"", context)
    assert _open_failure(keyring, b"", context) is OpenFailure.MALFORMED
    assert _open_failure(keyring, blob[:-1], context) is OpenFailure.MALFORMED
    assert _open_failure(keyring, blob[:HEADER_BYTES], context) is OpenFailure.MALFORMED


def test_appended_bytes_break_opening(keyring: Keyring, context: SealContext) -> None:
    blob = seal(keyring, PLAINTEXT, context)
    assert _open_failure(keyring, blob + b"\x00", context) is OpenFailure.AUTHENTICATION_FAILED


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_format_version(keyring: Keyring, context: SealContext, version: int) -> None:
    blob = bytes([version]) + seal(keyring, PLAINTEXT, context)[1:]
    assert _open_failure(keyring, blob, context) is OpenFailure.UNKNOWN_VERSION


# --- key selection ---------------------------------------------------------------------------


@pytest.mark.parametrize("key_id", [0, 2, 99, 2**32 - 1])
def test_unknown_key_id(keyring: Keyring, context: SealContext, key_id: int) -> None:
    blob = _with_key_id(seal(keyring, PLAINTEXT, context), key_id)
    assert _open_failure(keyring, blob, context) is OpenFailure.UNKNOWN_KEY


def test_key_id_newer_than_the_newest_key(context: SealContext) -> None:
    old = Keyring.generate()
    newer = old.rotate()
    blob = seal(newer, PLAINTEXT, context)

    assert key_id_of(blob) == 2
    assert _open_failure(old, blob, context) is OpenFailure.UNKNOWN_KEY


def test_key_is_picked_by_header_not_by_trial(keyring: Keyring, context: SealContext) -> None:
    # k1's blob relabelled as k2: opening must use k2 and fail, not fall back to trying k1.
    rotated = keyring.rotate()
    blob = _with_key_id(seal(keyring, PLAINTEXT, context), 2)
    assert _open_failure(rotated, blob, context) is OpenFailure.AUTHENTICATION_FAILED


def test_every_cause_has_the_same_message(keyring: Keyring, context: SealContext) -> None:
    blob = seal(keyring, PLAINTEXT, context)
    retired = keyring.rotate().retire(1)
    failures = [
        (keyring, b"\x01"),
        (keyring, b"\x07" + blob[1:]),
        (keyring, _with_key_id(blob, 9)),
        (retired, blob),
        (keyring, blob[:-1] + bytes([blob[-1] ^ 1])),
    ]
    messages = set()
    causes = set()
    for ring, candidate in failures:
        with pytest.raises(OpenError) as raised:
            open_sealed(ring, candidate, context)
        messages.add(str(raised.value))
        causes.add(raised.value.cause)
    assert messages == {"credential could not be opened"}
    assert causes == set(OpenFailure)


def test_open_error_does_not_chain_the_crypto_exception(keyring: Keyring, context: SealContext) -> None:
    blob = seal(keyring, PLAINTEXT, context)
    with pytest.raises(OpenError) as raised:
        open_sealed(keyring, blob, replace(context, tenant_id="other"))
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_open_error_pickles_with_its_cause() -> None:
    error = pickle.loads(pickle.dumps(OpenError(OpenFailure.RETIRED_KEY)))  # noqa: S301 - our own bytes
    assert error.cause is OpenFailure.RETIRED_KEY
    assert str(error) == "credential could not be opened"


# --- key_id_of -------------------------------------------------------------------------------


@pytest.mark.parametrize("garbage", [b"", b"\x01", b"\x01\x00\x00\x00\x01", b"\x01" + bytes(31)])
def test_key_id_of_garbage_is_malformed(garbage: bytes) -> None:
    with pytest.raises(OpenError) as raised:
        key_id_of(garbage)
    assert raised.value.cause is OpenFailure.MALFORMED


def test_key_id_of_unknown_version() -> None:
    with pytest.raises(OpenError) as raised:
        key_id_of(b"\x02" + bytes(40))
    assert raised.value.cause is OpenFailure.UNKNOWN_VERSION


# --- rotation and retirement -------------------------------------------------------------------


def test_after_rotate_old_ciphertexts_still_open(keyring: Keyring, context: SealContext) -> None:
    blob = seal(keyring, PLAINTEXT, context)
    rotated = keyring.rotate().rotate()
    assert open_sealed(rotated, blob, context) == PLAINTEXT


def test_after_rotate_seal_uses_the_new_primary(keyring: Keyring, context: SealContext) -> None:
    rotated = keyring.rotate()
    blob = seal(rotated, PLAINTEXT, context)

    assert rotated.primary_id == 2
    assert key_id_of(blob) == 2
    assert open_sealed(rotated, blob, context) == PLAINTEXT


def test_retired_key_opens_nothing(keyring: Keyring, context: SealContext) -> None:
    blob = seal(keyring, PLAINTEXT, context)
    retired = keyring.rotate().retire(1)

    assert not retired.has_usable_key(1)
    assert _open_failure(retired, blob, context) is OpenFailure.RETIRED_KEY
    assert open_sealed(keyring, blob, context) == PLAINTEXT  # the old Keyring object is unchanged
