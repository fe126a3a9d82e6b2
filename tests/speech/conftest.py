"""Fixtures for the speech caller tests: the real speech of tests/audio, made at test time.

Each provider's tests live in tests/speech/test_<provider>_*.py with its fake server in
tests/fakes/<provider>_server.py, speaking the provider's real wire protocol on loopback.
"""

from __future__ import annotations

from tests.audio.conftest import Speech, speech

__all__ = ["Speech", "speech"]
