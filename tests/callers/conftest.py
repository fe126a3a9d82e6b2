"""Fixtures for the caller tests."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture
def refused_base_url() -> str:
    """An OpenAI-style base URL on a loopback port that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Closed again: connecting now gets ECONNREFUSED (the port is not reused this fast).
    return f"http://127.0.0.1:{port}/v1"
