"""Project Wycheproof AES-GCM vectors against the AEAD functions sealing is built on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag

from integration_hub.vault import _aead

# The repo is cloned with ../shared beside it (locally /work/main and /work/shared). CI always
# has the file, so a missing file is a failure, not a skip.
VECTORS = (
    Path(__file__).resolve().parents[2].parent / "shared" / "testvectors" / "wycheproof_aes_gcm_test.json"
)


def _aes256_gcm_96bit_nonce_tests() -> list[dict[str, Any]]:
    document = json.loads(VECTORS.read_text(encoding="utf-8"))
    return [
        test
        for group in document["testGroups"]
        if (group["keySize"], group["ivSize"], group["tagSize"]) == (256, 96, 128)
        for test in group["tests"]
    ]


TESTS = _aes256_gcm_96bit_nonce_tests()


def _case_id(test: dict[str, Any]) -> str:
    return f"tc{test['tcId']}-{test['result']}"


def test_vector_file_has_the_66_aes256_gcm_tests() -> None:
    assert len(TESTS) == 66
    assert {test["result"] for test in TESTS} == {"valid", "invalid"}


@pytest.mark.parametrize("test", [t for t in TESTS if t["result"] == "valid"], ids=_case_id)
def test_valid_vector_encrypts_and_decrypts(test: dict[str, Any]) -> None:
    key, nonce, aad, msg = (bytes.fromhex(test[name]) for name in ("key", "iv", "aad", "msg"))
    sealed = bytes.fromhex(test["ct"] + test["tag"])

    assert _aead.encrypt(key, nonce, msg, aad) == sealed
    assert _aead.decrypt(key, nonce, sealed, aad) == msg


@pytest.mark.parametrize("test", [t for t in TESTS if t["result"] == "invalid"], ids=_case_id)
def test_invalid_vector_fails_to_decrypt(test: dict[str, Any]) -> None:
    key, nonce, aad = (bytes.fromhex(test[name]) for name in ("key", "iv", "aad"))
    sealed = bytes.fromhex(test["ct"] + test["tag"])

    with pytest.raises(InvalidTag):
        _aead.decrypt(key, nonce, sealed, aad)


def test_aead_refuses_keys_and_nonces_of_other_sizes() -> None:
    with pytest.raises(ValueError, match="32-byte key"):
        _aead.encrypt(bytes(16), bytes(12), b"", b"")
    with pytest.raises(ValueError, match="12-byte nonces"):
        _aead.encrypt(bytes(32), bytes(16), b"", b"")
