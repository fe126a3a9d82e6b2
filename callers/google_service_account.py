"""Checks for a Google Cloud service-account key file (vertex_ai, google_speech).

Pure data handling, no Google SDK: the file is validated when the credential is
stored, so a wrong upload (an OAuth client file, an API key) is refused at once
rather than on the first call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from callers.spec import InvalidCredentialField

FIELD = "service_account_json"

# What Google's auth libraries need from the file to sign a token request.
_REQUIRED_KEYS = ("client_email", "private_key", "token_uri")


def check_service_account(secret: Mapping[str, str], options: Mapping[str, str]) -> None:
    """extra_validation for specs whose secret is a service-account key file."""
    raw = secret.get(FIELD)
    if raw is None:
        return  # reported as "required" by the per-field checks
    where = f"secret.{FIELD}"
    try:
        document = json.loads(raw)
    except ValueError:
        raise InvalidCredentialField(where, "must be valid JSON") from None
    if not isinstance(document, dict) or document.get("type") != "service_account":
        raise InvalidCredentialField(where, 'must be a service-account key file ("type": "service_account")')
    missing = [key for key in _REQUIRED_KEYS if not document.get(key)]
    if missing:
        raise InvalidCredentialField(where, f"service account JSON lacks {', '.join(missing)}")
