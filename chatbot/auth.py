"""Who is calling the chatbot layer: the hub says, from the caller's own hub token.

The chatbot layer holds no key and no token of its own: a caller presents its hub token
(authorization: Bearer ...), every hub call made for it carries that token, and the hub
decides what it may use. To scope bots and sessions, the layer asks the hub's WhoAmI
which tenant the token belongs to, and remembers the answer for a few seconds
(`CACHE_SECONDS`) under the token's SHA-256, never the token itself. A revoked token
is refused by the hub at once on every model call; only reads and edits of the
layer's own records may still pass within those seconds.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from chatbot.errors import ChatbotError

CACHE_SECONDS = 5.0
_MAX_CACHED = 10_000


class Unauthenticated(ChatbotError):
    code = grpc.StatusCode.UNAUTHENTICATED


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    token: str  # passed on to the hub with each of this caller's calls; never logged

    def __repr__(self) -> str:  # the token must not reach a log through a repr
        return f"Caller(tenant={self.tenant!r})"


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("missing authorization: send 'authorization: Bearer <hub token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization must be 'Bearer <hub token>'")
    return token.strip()


class CallerResolver:
    """Token -> Caller, through `whoami` (the hub's WhoAmI with that token), cached."""

    def __init__(
        self, whoami: Callable[[str], Awaitable[str]], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._whoami = whoami
        self._clock = clock
        self._tenants: dict[str, tuple[str, float]] = {}

    async def resolve(self, authorization: str | None) -> Caller:
        token = bearer_token(authorization)
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._tenants.get(key)
        if cached is not None and cached[1] > now:
            return Caller(tenant=cached[0], token=token)
        tenant = await self._whoami(token)  # raises for a bad, revoked or expired token
        if len(self._tenants) >= _MAX_CACHED:
            self._tenants.clear()
        self._tenants[key] = (tenant, now + CACHE_SECONDS)
        return Caller(tenant=tenant, token=token)
