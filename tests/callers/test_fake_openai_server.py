"""The fake OpenAI server itself: other tests rely on its wire format and knobs."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from tests.fakes.openai_server import FakeOpenAI


async def test_wrong_key_gets_openais_exact_error_shape() -> None:
    async with FakeOpenAI(valid_keys={"sk-good"}) as fake, aiohttp.ClientSession() as http:
        headers = {"Authorization": "Bearer sk-proj-wrongkey1234"}
        async with http.get(f"{fake.base_url}/models", headers=headers) as response:
            assert response.status == 401
            body = await response.json()
    assert body == {
        "error": {
            "message": "Incorrect API key provided: sk-*************1234. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


async def test_models_list_and_request_record() -> None:
    async with (
        FakeOpenAI(valid_keys={"sk-good"}, models=("m1", "m2")) as fake,
        aiohttp.ClientSession() as http,
    ):
        assert fake.base_url.startswith("http://127.0.0.1:")
        assert fake.base_url.endswith("/v1")
        async with http.get(
            f"{fake.base_url}/models", headers={"Authorization": "Bearer sk-good"}
        ) as response:
            assert response.status == 200
            body = await response.json()
    assert [m["id"] for m in body["data"]] == ["m1", "m2"]
    assert body["object"] == "list"
    [request] = fake.requests
    assert (request.method, request.path, request.query) == ("GET", "/v1/models", {})
    assert request.headers["authorization"] == "Bearer sk-good"  # case-insensitive


async def test_forced_status_carries_retry_after() -> None:
    async with FakeOpenAI(valid_keys=None) as fake, aiohttp.ClientSession() as http:
        fake.force_status, fake.retry_after = 429, "Wed, 21 Oct 2015 07:28:00 GMT"
        async with http.get(f"{fake.base_url}/models") as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
            assert (await response.json())["error"]["code"] == "rate_limit_exceeded"


async def test_added_routes_get_the_same_auth() -> None:
    async def completions(request: web.Request) -> web.Response:
        return web.json_response({"echo": (await request.json())["model"]})

    fake = FakeOpenAI(valid_keys={"sk-good"})
    fake.add_route("POST", "/v1/chat/completions", completions)
    async with fake, aiohttp.ClientSession() as http:
        url = f"{fake.base_url}/chat/completions"
        async with http.post(url, json={"model": "m"}) as response:
            assert response.status == 401
        async with http.post(
            url, json={"model": "m"}, headers={"Authorization": "Bearer sk-good"}
        ) as response:
            assert await response.json() == {"echo": "m"}
    assert fake.requests[-1].body == b'{"model": "m"}'
