"""Shared fixtures for the vault tests (real keys and real AES-GCM throughout)."""

from __future__ import annotations

import pytest

from integration_hub.vault import Keyring, SealContext


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate()


@pytest.fixture
def context() -> SealContext:
    return SealContext(tenant_id="tenant-a", credential_id="cred-1", provider="openai")
