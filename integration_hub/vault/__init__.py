"""The credential vault: keyring, AES-256-GCM sealing, Secret values and log redaction."""

from integration_hub.vault.errors import KeyringError, OpenError, OpenFailure
from integration_hub.vault.keyring import KeyInfo, Keyring, format_key_id, parse_key_id
from integration_hub.vault.redaction import RedactingFilter, redact, redact_mapping, register_secret
from integration_hub.vault.sealing import (
    ENCRYPTION_WARNING_THRESHOLD,
    FORMAT_VERSION,
    NONCE_BOUND,
    SealContext,
    key_id_of,
    open_sealed,
    seal,
)
from integration_hub.vault.secret import Secret, mask_hint
from integration_hub.vault.source import KeyringSource

__all__ = [
    "ENCRYPTION_WARNING_THRESHOLD",
    "FORMAT_VERSION",
    "NONCE_BOUND",
    "KeyInfo",
    "Keyring",
    "KeyringError",
    "KeyringSource",
    "OpenError",
    "OpenFailure",
    "RedactingFilter",
    "SealContext",
    "Secret",
    "format_key_id",
    "key_id_of",
    "mask_hint",
    "open_sealed",
    "parse_key_id",
    "redact",
    "redact_mapping",
    "register_secret",
    "seal",
]
