"""Phone numbers: E.164 checked with Google's libphonenumber rules (phonenumbers)."""

from __future__ import annotations

import phonenumbers

from integration_hub.errors import invalid_field

_SEPARATORS = frozenset(" -.()")


def e164(field: str, value: str) -> str:
    """The number in E.164 form, or INVALID_ARGUMENT naming the field and the problem."""
    text = value.strip()
    if not text:
        raise invalid_field(field, "required: a phone number in E.164 form, e.g. +14155550100")
    if not text.startswith("+"):
        raise invalid_field(
            field, f"{text!r} is not in E.164 form: it must start with + and the country code"
        )
    if not all(c.isdigit() or c in _SEPARATORS for c in text[1:]):
        # phonenumbers would read letters as keypad digits (a vanity number): not E.164.
        raise invalid_field(field, f"{text!r} is not in E.164 form: only digits may follow the +")
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise invalid_field(field, f"{text!r} is not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise invalid_field(field, f"{text!r} is not a valid number (no such number range in its country)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
