"""The chatbot layer learns a caller's tenant from the hub, keyed by the token's hash."""

from __future__ import annotations

import pytest

from chatbot.auth import CACHE_SECONDS, CallerResolver, Unauthenticated


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_tenant_comes_from_the_hub_and_is_cached_briefly() -> None:
    asked: list[str] = []

    async def whoami(token: str) -> str:
        asked.append(token)
        return {"tok-a": "acme", "tok-b": "globex"}[token]

    clock = Clock()
    resolver = CallerResolver(whoami, clock)
    caller = await resolver.resolve("Bearer tok-a")
    assert caller.tenant == "acme"
    assert "tok-a" not in repr(caller)
    await resolver.resolve("bearer tok-a")
    assert asked == ["tok-a"]
    assert (await resolver.resolve("Bearer tok-b")).tenant == "globex"
    clock.now += CACHE_SECONDS + 0.1
    await resolver.resolve("Bearer tok-a")
    assert asked == ["tok-a", "tok-b", "tok-a"]


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "tok-a"])
async def test_a_missing_or_malformed_header_is_refused_without_asking(header: str | None) -> None:
    async def whoami(token: str) -> str:
        raise AssertionError("must not be asked")

    with pytest.raises(Unauthenticated):
        await CallerResolver(whoami).resolve(header)
