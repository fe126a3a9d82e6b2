"""Fixtures for the telephony tests: the real speech of tests/audio, made at test time
(espeak-ng and sox), which the fake providers play into the media websocket.

Each provider's caller tests live in tests/telephony/test_<provider>_wire.py with its
fake server in tests/fakes/<provider>_server.py, speaking the provider's REST API,
calling back as the provider does (signed) and playing the provider's side of the
media websocket.
"""

from __future__ import annotations

from tests.audio.conftest import Speech, speech

__all__ = ["Speech", "speech"]
