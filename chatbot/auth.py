"""Who is calling the chatbot layer, and which hub token works for that tenant.

Two kinds of hub tokens, never stored by this layer:
- A caller's own hub token (authorization: Bearer ...) authenticates it: the hub's
  WhoAmI says its tenant and scopes. Managing bots and sources needs the admin scope;
  asking and reading sessions, invoke or admin. The answer is remembered for a few
  seconds (`CACHE_SECONDS`) under the token's SHA-256, never the token itself, so a
  revoked token stops working here within those seconds.
- The layer's service tokens, one per tenant it serves (read from a file at start,
  chatbot.config), make the hub calls: ingestion runs in the background and resumes
  after a restart, long after any caller's request, and must not keep a caller's token.
  A caller whose tenant has no service token is refused, naming the tenant.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from chatbot.errors import ChatbotError
from chatbot.hub_types import Identity

CACHE_SECONDS = 5.0
_MAX_CACHED = 10_000


class Unauthenticated(ChatbotError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ChatbotError):
    code = grpc.StatusCode.PERMISSION_DENIED


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            raise PermissionDenied(f"this needs a hub token with the {scope} scope")


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("missing authorization: send 'authorization: Bearer <hub token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization must be 'Bearer <hub token>'")
    return token.strip()


class CallerResolver:
    """authorization header -> Caller, through `whoami` (the hub's WhoAmI for that token)."""

    def __init__(
        self,
        whoami: Callable[[str], Awaitable[Identity]],
        served_tenants: Callable[[], frozenset[str]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._whoami = whoami
        self._served = served_tenants
        self._clock = clock
        self._callers: dict[str, tuple[Caller, float]] = {}

    async def resolve(self, authorization: str | None) -> Caller:
        token = bearer_token(authorization)
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._callers.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        identity = await self._whoami(token)  # raises Unauthenticated for a bad or revoked token
        if identity.tenant not in self._served():
            raise PermissionDenied(f"this chatbot service has no hub token for tenant {identity.tenant!r}")
        caller = Caller(tenant=identity.tenant, scopes=identity.scopes)
        if len(self._callers) >= _MAX_CACHED:
            self._callers.clear()
        self._callers[key] = (caller, now + CACHE_SECONDS)
        return caller
