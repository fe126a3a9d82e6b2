"""Ids of the chatbot layer's records: a kind prefix and 128 random bits.

Random rather than sequential: ids appear in URLs and must not tell how many bots or
sessions exist, nor let one be guessed from another (tenants are checked on every
lookup anyway).
"""

from __future__ import annotations

import base64
import os


def new_id(kind: str) -> str:
    return f"{kind}_{base64.b32encode(os.urandom(16)).decode().rstrip('=').lower()}"
