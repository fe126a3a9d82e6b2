"""Small pieces shared by the LLM, speech and telephony types."""

from __future__ import annotations

from typing import TypeAlias

# What a provider-specific options dict may hold: anything JSON can carry. Options a
# provider offers that the common types do not model travel here, untouched.
JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None
