"""The application JWT that authenticates every Voice API request, minted per call.

Minted by the SDK's own JwtClient (vonage_jwt 1.1): RS256 over {application_id, iat, jti,
exp = iat + 15 min} with the application's private key, which is what Vonage checks
against the public key it holds for the application. The client is built for one call
and dropped with it (pool connections, never keys); the JWT itself is a bearer
credential and never goes into an error or a log line.

The key reaches JwtClient already loaded (a cryptography RSA key object, which it passes
to PyJWT as it is), never as a string: JwtClient takes a string ending in ".<word>" for a
file *path* and opens it (its error would then name the key), and accepts only PKCS#8
text, where PKCS#1 ("BEGIN RSA PRIVATE KEY") is loaded here just as well.

Loading an RSA private key validates it (cryptography checks the key's math), which costs
tens of milliseconds of CPU with the GIL held, so on the event loop every live call's
audio would stall for it, and a thread would not help. So each key is validated the first
time this process sees it, and later loads skip the validation: what is remembered is
a keyed BLAKE2b digest of the PEM (the key is random per process, the digests are in a
bounded LRU), never the key, as the vault's redaction fingerprints do.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from vonage_jwt import JwtClient  # type: ignore[import-untyped]

from callers.base import AuthenticationFailed, CallerError, InvalidRequest, SecretFields

KEY_FIELD = "private_key"
VALIDATED_KEYS_KEPT = 1024
_PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----[A-Za-z0-9+/=\s]+?-----END \1-----"
)
_UNUSABLE = (
    "secret.private_key could not sign Vonage's application JWT: it must be the application's "
    "RSA private key (PEM, unencrypted)"
)
_FINGERPRINT_KEY = secrets.token_bytes(32)
_validated: OrderedDict[bytes, None] = OrderedDict()


def _fingerprint(pem: bytes) -> bytes:
    return hashlib.blake2b(pem, key=_FINGERPRINT_KEY, digest_size=32).digest()


def _private_key(raw: str) -> rsa.RSAPrivateKey:
    match = _PRIVATE_KEY_BLOCK.search(raw)
    if match is None:
        raise AuthenticationFailed("secret.private_key holds no PEM private key block")
    if match.group(1) == "ENCRYPTED PRIVATE KEY":
        raise AuthenticationFailed("secret.private_key is encrypted; give the unencrypted PEM key")
    pem = match.group(0).encode("ascii")
    fingerprint = _fingerprint(pem)
    known = fingerprint in _validated
    failure: CallerError | None = None
    key: object = None
    try:
        key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=known)
    except (ValueError, TypeError):
        failure = AuthenticationFailed(_UNUSABLE)
    if failure is not None:
        raise failure  # outside the except block: no __context__ from the key's parser
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AuthenticationFailed(_UNUSABLE)  # Vonage signs with RS256: an RSA key only
    _validated[fingerprint] = None
    _validated.move_to_end(fingerprint)
    while len(_validated) > VALIDATED_KEYS_KEPT:
        _validated.popitem(last=False)
    return key


def application_id(options: Mapping[str, str]) -> str:
    value = (options.get("application_id") or "").strip()
    if not value:
        raise InvalidRequest("options.application_id is required")
    return value


def application_jwt(secret: SecretFields, options: Mapping[str, str]) -> str:
    """A fresh application JWT for one request (valid 15 minutes, per the SDK)."""
    app_id = application_id(options)
    key = _private_key(secret.reveal(KEY_FIELD))
    failure: CallerError | None = None
    token: object = b""
    try:
        token = JwtClient(app_id, key).generate_application_jwt()
    except Exception:  # VonageJwtError, or PyJWT's errors
        failure = AuthenticationFailed(_UNUSABLE)
    if failure is not None:
        raise failure
    return token.decode("ascii") if isinstance(token, bytes) else str(token)
