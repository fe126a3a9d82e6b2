"""Hub tokens: minted once, stored hashed, resolved to a Principal on every call.

A token is "ihub_" + 32 random bytes (base64url). Only its SHA-256 is stored: the
token has 256 bits of entropy, so a fast hash is enough (a slow password hash
buys nothing against brute force of a random 256-bit value and costs every call).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import grpc

from integration_hub.cache import RowCache, token_key
from integration_hub.errors import HubError, unauthenticated
from integration_hub.rpc import Principal
from integration_hub.store.base import Store, TokenRow

TOKEN_PREFIX = "ihub_"  # noqa: S105 - a prefix, not a secret
_TOKEN_SHAPE = re.compile(r"ihub_[A-Za-z0-9_\-]{43}")
KNOWN_SCOPES = frozenset({"admin", "invoke"})
_TENANT_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,62}")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_tenant_id(tenant_id: str) -> str:
    if not _TENANT_SHAPE.fullmatch(tenant_id):
        raise ValueError(
            f"tenant {tenant_id!r}: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return tenant_id


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(sorted(set(scopes)))
    if not chosen:
        raise ValueError("a token needs at least one scope: admin, invoke")
    unknown = set(chosen) - KNOWN_SCOPES
    if unknown:
        raise ValueError(f"unknown scope(s) {sorted(unknown)}; known: {sorted(KNOWN_SCOPES)}")
    return chosen


async def mint_token(
    store: Store,
    *,
    tenant_id: str,
    scopes: Iterable[str],
    name: str = "",
    expires_at: datetime | None = None,
) -> tuple[TokenRow, str]:
    """Create a token; return its row and the token itself (shown once, never stored)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = TokenRow(
        id=uuid.uuid4().hex,
        tenant_id=check_tenant_id(tenant_id),
        name=name,
        token_hash=hash_token(token),
        scopes=check_scopes(scopes),
        created_at=datetime.now(UTC),
        expires_at=expires_at,
    )
    await store.insert_token(row)
    return row, token


def bearer_token(authorization: str | None) -> str:
    """The token of an "Authorization: Bearer <token>" value; UNAUTHENTICATED otherwise."""
    if not authorization:
        raise unauthenticated()
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN_SHAPE.fullmatch(token):
        raise unauthenticated("the Authorization header must be the word Bearer followed by a hub token")
    return token


class Authenticator:
    """Resolves bearer tokens to principals through the row cache and the store."""

    def __init__(self, store: Store, cache: RowCache) -> None:
        self._store = store
        self._cache = cache

    async def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        digest = hash_token(token)
        row = await self._cache.get(token_key(digest), lambda: self._store.get_token_by_hash(digest))
        # The hash lookup already matched; the constant-time compare guards a cache bug.
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            raise unauthenticated("unknown hub token")
        now = datetime.now(UTC)
        if row.revoked_at is not None:
            raise unauthenticated("this hub token has been revoked")
        if row.expires_at is not None and row.expires_at <= now:
            raise unauthenticated("this hub token has expired")
        return Principal(tenant_id=row.tenant_id, token_id=row.id, scopes=frozenset(row.scopes))


def authorize(principal: Principal, allowed_scopes: frozenset[str], method: str) -> None:
    if principal.scopes.isdisjoint(allowed_scopes):
        raise HubError(
            grpc.StatusCode.PERMISSION_DENIED,
            "MISSING_SCOPE",
            f"{method} needs one of the scopes {sorted(allowed_scopes)}; "
            f"this token has {sorted(principal.scopes)}",
            {"required_scopes": ",".join(sorted(allowed_scopes))},
        )


async def revoke_token(store: Store, cache: RowCache, token_id: str) -> TokenRow | None:
    row = await store.revoke_token(token_id, datetime.now(UTC))
    if row is not None:
        await cache.invalidate([token_key(row.token_hash)])
    return row
