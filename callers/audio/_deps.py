"""How a missing library of the `speech` extra is reported.

Modules of this package that need numpy, soundfile, soxr or PyAV import them at their
top inside ``try``; the package's ``__init__`` loads those modules only on first use,
so importing ``callers`` or ``callers.audio`` imports none of these libraries.
"""

from __future__ import annotations

from callers.errors import MissingExtra

EXTRA = "speech"


def missing_extra(exc: BaseException) -> MissingExtra:
    """The error for a library that failed to import (absent, or its native lib missing)."""
    return MissingExtra(EXTRA, f"audio support needs its libraries: {exc}")
