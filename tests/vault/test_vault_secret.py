"""Secret: hard to leak by accident; mask_hint: safe display hints."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from integration_hub.vault import Secret, mask_hint, redact

VALUE = "sk-proj-Zq81LmP0vW4xT7bN2cR9"


@pytest.fixture
def secret() -> Secret:
    return Secret({"api_key": VALUE, "org": "org-1234"})


def test_reveal_and_get(secret: Secret) -> None:
    assert secret.reveal("api_key") == VALUE
    assert secret.get("org") == "org-1234"
    assert secret.get("missing") is None
    assert secret.get("missing", "fallback") == "fallback"
    assert secret.field_names() == ("api_key", "org")


def test_text_forms_show_field_names_only(secret: Secret) -> None:
    shown = [
        repr(secret),
        str(secret),
        format(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>40}",
    ]
    assert repr(secret) == "Secret(fields=['api_key', 'org'])"
    for text in shown:
        assert VALUE not in text
        assert "org-1234" not in text
        assert "api_key" in text


def test_cannot_be_pickled(secret: Secret) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(secret, protocol=protocol)


def test_cannot_be_copied(secret: Secret) -> None:
    with pytest.raises(TypeError, match="cannot be copied"):
        copy.copy(secret)
    with pytest.raises(TypeError, match="cannot be copied"):
        copy.deepcopy(secret)
    with pytest.raises(TypeError):
        copy.deepcopy({"wrapped": secret})


def test_is_not_json_serialisable(secret: Secret) -> None:
    with pytest.raises(TypeError):
        json.dumps(secret)
    with pytest.raises(TypeError):
        json.dumps({"credential": secret})


def test_equality_is_identity_not_value(secret: Secret) -> None:
    twin = Secret({"api_key": VALUE, "org": "org-1234"})
    assert secret == secret
    assert secret != twin
    assert secret != {"api_key": VALUE, "org": "org-1234"}


def test_reveal_missing_field_names_the_field_not_a_value(secret: Secret) -> None:
    with pytest.raises(KeyError) as raised:
        secret.reveal("password")
    message = str(raised.value)
    assert "password" in message
    assert VALUE not in message
    assert "org-1234" not in message
    assert raised.value.__context__ is None or raised.value.__suppress_context__


def test_values_must_be_strings() -> None:
    with pytest.raises(TypeError, match="'api_key'"):
        Secret({"api_key": 12345678})  # type: ignore[dict-item]


def test_creating_a_secret_registers_its_values_for_redaction() -> None:
    value = "Vq3nX8rTz0Lk5WmJ"
    assert redact(f"leaked {value}") == f"leaked {value}"
    Secret({"token": value})
    assert redact(f"leaked {value}") == "leaked [REDACTED]"


def test_bytes_round_trip_is_canonical_json() -> None:
    secret = Secret({"b": "två", "a": "1"})
    assert secret.to_bytes() == '{"a":"1","b":"två"}'.encode()
    restored = Secret.from_bytes(secret.to_bytes())
    assert restored.reveal("b") == "två"
    assert restored.field_names() == ("a", "b")


@pytest.mark.parametrize(
    "payload", [b"\xff\xfe", b'{"api_key": "sk-unterminated', b'["list"]', b'{"api_key": 5}']
)
def test_from_bytes_errors_do_not_echo_the_payload(payload: bytes) -> None:
    with pytest.raises(ValueError, match="secret") as raised:
        Secret.from_bytes(payload)
    assert "unterminated" not in str(raised.value)
    assert raised.value.__suppress_context__ or raised.value.__context__ is None


# --- mask_hint -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("sk-abcdefghijklmnopqrstuvwxyza1b2", "sk-...a1b2"),
        ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz-Q9x7", "sk-ant-...Q9x7"),
        ("sk-proj-abcdefghijklmnopqrstuvw-Zz19", "sk-proj-...Zz19"),
        ("sk-or-v1-0123456789abcdef0123456789abcdef", "sk-or-v1-...cdef"),
        ("AKIAIOSFODNN7EXAMPLE", "AKIA...MPLE"),
        ("AIzaSyA-1234567890abcdefghijklmnopqrstu", "AIza...rstu"),
        ("gsk_0123456789abcdefghijWXYZ", "gsk_...WXYZ"),
        ("r8_0123456789abcdefghij9876", "r8_...9876"),
        ("hf_0123456789abcdefghijAbCd", "hf_...AbCd"),
        ("xai-0123456789abcdefghijwxyz", "xai-...wxyz"),
        ("q7Zx9Lm2Pw4Rt8Yv", "...t8Yv"),
        ("abcdefghijkl", "...ijkl"),
        ("abcdefghijk", "****"),
        ("short", "****"),
        ("", "****"),
        # Long enough overall, but the part after the prefix is short: showing 4 would leak too much.
        ("sk-abcdefghi", "****"),
        ("sk-ant-abcdefgh", "****"),
    ],
)
def test_mask_hint(value: str, hint: str) -> None:
    assert mask_hint(value) == hint
