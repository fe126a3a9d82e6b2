"""Redaction: known credential patterns, registered values, and the logging filter."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator

import pytest

from integration_hub.vault import RedactingFilter, redact, redact_mapping, register_secret
from integration_hub.vault.redaction import SUBSTRING_SCAN_LIMIT


def _fresh_value() -> str:
    """A registered-style value no pattern knows, unique per test (the registry is process-wide)."""
    return "q7Zx" + secrets.token_hex(8)


# --- patterns ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-abcdefgh12345678 used", "key [REDACTED] used"),
        ("key=sk-ant-api03-AbC_dEf-123456 end", "key=[REDACTED] end"),
        ("OPENAI_API_KEY=sk-proj-aB3dE5gH7jK9", "OPENAI_API_KEY=[REDACTED]"),
        ("Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9.x-y_z~+/=", "Authorization: Bearer [REDACTED]"),
        ("authorization: bearer abcdefgh12345678", "authorization: bearer [REDACTED]"),
        ("aws AKIAIOSFODNN7EXAMPLE and ASIAY34FZKBOKMUTVV7A", "aws [REDACTED] and [REDACTED]"),
        ("google AIzaSyA-1234567890abcdefghijklmnopqrstu!", "google [REDACTED]!"),
        ("token ihub_0123456789abcdefXYZ", "token [REDACTED]"),
    ],
)
def test_patterns(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "task-scheduler-01 and disk-usage-alerts are fine",
        "sk-short",
        "Bearer short",
        "AKIA-not-a-key",
        "ihub_short",
        "plain log line with numbers 1234567890",
    ],
)
def test_patterns_leave_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


# --- registered values -------------------------------------------------------------------------


def test_registered_value_in_a_sentence() -> None:
    value = _fresh_value()
    register_secret(value)
    assert redact(f"the key {value} was rejected.") == "the key [REDACTED] was rejected."


def test_registered_value_in_a_url_query() -> None:
    value = _fresh_value()
    register_secret(value)
    url = f"GET https://api.example.com/v1/models?key={value}&limit=5"
    assert redact(url) == "GET https://api.example.com/v1/models?key=[REDACTED]&limit=5"


def test_registered_value_in_a_url_path_and_userinfo() -> None:
    value = _fresh_value()
    register_secret(value)
    assert redact(f"https://user:{value}@host/x") == "https://user:[REDACTED]@host/x"
    assert redact(f"https://host/keys/{value}/usage") == "https://host/keys/[REDACTED]/usage"


def test_registered_value_in_json() -> None:
    value = _fresh_value()
    register_secret(value)
    text = f'{{"provider": "acme", "api_key": "{value}", "n": 1}}'
    redacted = redact(text)
    assert value not in redacted
    assert redacted == '{"provider": "acme", "api_key": "[REDACTED]", "n": 1}'


def test_registered_value_inside_a_longer_token() -> None:
    value = _fresh_value()
    register_secret(value)
    assert redact(f"file key_{value}.json") == "file key_[REDACTED].json"


def test_substring_scan_is_bounded_but_whole_parts_still_match() -> None:
    value = _fresh_value()
    register_secret(value)
    long_glued = "x" * SUBSTRING_SCAN_LIMIT + value
    long_with_part = "x" * SUBSTRING_SCAN_LIMIT + "/" + value
    assert redact(long_glued) == long_glued  # past the limit, glued substrings are not scanned
    assert redact(long_with_part) == "x" * SUBSTRING_SCAN_LIMIT + "/[REDACTED]"


def test_the_example_value_from_the_brief_is_redacted() -> None:
    register_secret("q7Zx9Lm2Pw4Rt8Yv")
    assert redact("sent q7Zx9Lm2Pw4Rt8Yv upstream") == "sent [REDACTED] upstream"


def test_values_shorter_than_8_are_not_registered() -> None:
    register_secret("a1B2c3D")
    assert redact("code a1B2c3D here") == "code a1B2c3D here"


def test_redact_mapping_is_recursive() -> None:
    value = _fresh_value()
    register_secret(value)
    extras = {"key": value, "nested": {"list": [value, 3], "ok": "fine"}, "count": 2}
    assert redact_mapping(extras) == {
        "key": "[REDACTED]",
        "nested": {"list": ["[REDACTED]", 3], "ok": "fine"},
        "count": 2,
    }


# --- logging -----------------------------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s %(detail)s"))
    logger = logging.getLogger(f"tests.vault.redaction.{secrets.token_hex(4)}")
    logger.propagate = False
    logger.addFilter(RedactingFilter())
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def test_log_message_args_and_extras_are_redacted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    value = _fresh_value()
    register_secret(value)

    logger.warning("upstream refused key %s (%s)", value, "sk-abcdefgh12345678", extra={"detail": value})

    output = stream.getvalue()
    assert value not in output
    assert "sk-abcdefgh12345678" not in output
    assert output == "WARNING upstream refused key [REDACTED] ([REDACTED]) [REDACTED]\n"


def test_logged_exception_is_redacted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    value = _fresh_value()
    register_secret(value)

    try:
        raise RuntimeError(f"provider said: invalid key {value}")
    except RuntimeError:
        logger.exception("call failed", extra={"detail": "-"})

    output = stream.getvalue()
    assert value not in output
    assert "RuntimeError: provider said: invalid key [REDACTED]" in output
    assert "Traceback" in output


def test_stack_info_is_redacted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    value = _fresh_value()
    register_secret(value)

    def leaky(key: str) -> None:
        logger.info("checkpoint", stack_info=True, extra={"detail": key})

    leaky(value)
    assert value not in stream.getvalue()


def test_filter_on_a_handler_sees_records_from_child_loggers() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    parent = logging.getLogger(f"tests.vault.parent.{secrets.token_hex(4)}")
    parent.propagate = False
    parent.addHandler(handler)
    value = _fresh_value()
    register_secret(value)

    logging.getLogger(f"{parent.name}.child").error("key=%s", value)

    assert stream.getvalue() == "key=[REDACTED]\n"


def test_mismatched_format_args_do_not_raise(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    value = _fresh_value()
    register_secret(value)

    logger.error("two %s %s", value, extra={"detail": "-"})

    assert value not in stream.getvalue()
    assert "[REDACTED]" in stream.getvalue()
