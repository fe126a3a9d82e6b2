"""The chatbot layer learns a caller's tenant and scopes from the hub, keyed by the token's hash."""

from __future__ import annotations

import pytest

from chatbot.auth import CACHE_SECONDS, Caller, CallerResolver, PermissionDenied, Unauthenticated
from chatbot.hub_types import Identity


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


IDENTITIES = {
    "tok-a": Identity("acme", "t1", frozenset({"invoke"})),
    "tok-b": Identity("globex", "t2", frozenset({"admin", "invoke"})),
    "tok-c": Identity("initech", "t3", frozenset({"admin"})),
}


async def test_the_caller_comes_from_the_hub_and_is_cached_briefly() -> None:
    asked: list[str] = []

    async def whoami(token: str) -> Identity:
        asked.append(token)
        return IDENTITIES[token]

    clock = Clock()
    resolver = CallerResolver(whoami, lambda: frozenset({"acme", "globex"}), clock)
    caller = await resolver.resolve("Bearer tok-a")
    assert caller == Caller("acme", frozenset({"invoke"}))
    await resolver.resolve("bearer tok-a")
    assert asked == ["tok-a"]
    assert (await resolver.resolve("Bearer tok-b")).tenant == "globex"
    clock.now += CACHE_SECONDS + 0.1
    await resolver.resolve("Bearer tok-a")
    assert asked == ["tok-a", "tok-b", "tok-a"]


async def test_a_tenant_without_a_service_token_is_refused_by_name() -> None:
    async def whoami(token: str) -> Identity:
        return IDENTITIES[token]

    with pytest.raises(PermissionDenied, match="'initech'"):
        await CallerResolver(whoami, lambda: frozenset({"acme"})).resolve("Bearer tok-c")


def test_scopes() -> None:
    Caller("acme", frozenset({"admin"})).require("invoke")  # admin may do everything
    with pytest.raises(PermissionDenied, match="admin scope"):
        Caller("acme", frozenset({"invoke"})).require("admin")


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "tok-a"])
async def test_a_missing_or_malformed_header_is_refused_without_asking(header: str | None) -> None:
    async def whoami(token: str) -> Identity:
        raise AssertionError("must not be asked")

    with pytest.raises(Unauthenticated):
        await CallerResolver(whoami, lambda: frozenset({"acme"})).resolve(header)
