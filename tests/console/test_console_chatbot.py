"""The console's Chatbot page and the hub's /console/chatbot/ proxy: a real hub in-process with
HUB_CHATBOT_URL set, the real chatbot server (SQLite, Milvus Lite) on loopback against it, the
fake OpenAI upstream behind both for chat and embeddings, and headless Chromium on the page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from chatbot.config import Settings as ChatbotSettings
from chatbot.server import Chatbot
from chatbot.v1 import chatbot_pb2 as pb
from chatbot.v1 import chatbot_pb2_grpc
from integration_hub.auth import mint_token
from integration_hub.v1 import credentials_pb2 as cpb
from tests.console.test_console import STEP, Page
from tests.fakes.openai_server import FakeOpenAI
from tests.harness import HubUnderTest, free_port, running_hub, settings_for

OPENAI_KEY = "sk-console-chatbot-0123456789abcdef"
HOSTILE_BOT = '<img src=x onerror="window.__xss = 1">Helpdesk'
HANDBOOK = b"# Leave\n\nEvery employee gets 25 days of paid annual leave per calendar year.\n"
TIMEOUT = 60.0


@dataclass
class Both:
    hut: HubUnderTest
    chatbot: Chatbot
    stub: chatbot_pb2_grpc.ChatbotServiceStub

    def admin(self) -> list[tuple[str, str]]:
        return self.hut.auth(self.hut.tokens.admin)


@pytest.fixture
async def both(tmp_path: Path) -> AsyncIterator[Both]:
    # The hub must know the chatbot's URL at start and the chatbot the hub's: the chatbot's
    # HTTP port is chosen first.
    port = free_port()
    settings = settings_for(tmp_path, database_url=None, chatbot_url=f"http://127.0.0.1:{port}")
    async with FakeOpenAI(valid_keys={OPENAI_KEY}) as upstream, running_hub(settings) as hut:
        await hut.credentials_stub().CreateCredential(
            cpb.CreateCredentialRequest(
                provider="openai",
                name="openai",
                secret={"api_key": OPENAI_KEY},
                options={"base_url": upstream.base_url},
            ),
            metadata=hut.auth(hut.tokens.admin),
            timeout=TIMEOUT,
        )
        tokens_file = tmp_path / "chatbot-tokens"
        # The chatbot calls the hub with one invoke token per tenant it serves.
        globex_invoke = (await mint_token(hut.hub.store, tenant_id="globex", scopes=["invoke"]))[1]
        tokens_file.write_text(f"{hut.tokens.invoke_only}\n{globex_invoke}\n")
        chatbot = await Chatbot.open(
            ChatbotSettings(
                hub_target=hut.grpc_target,
                hub_tokens_file=str(tokens_file),
                database_url=f"sqlite:///{tmp_path / 'chatbot.db'}",
                vectors_uri=str(tmp_path / "vectors.db"),
                grpc_port=0,
                http_port=port,
            )
        )
        await chatbot.serve()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{chatbot.grpc_port}")
        try:
            yield Both(hut, chatbot, chatbot_pb2_grpc.ChatbotServiceStub(channel))
        finally:
            await channel.close()
            await chatbot.close()


async def bot_with_a_source(both: Both) -> tuple[pb.Bot, pb.IngestionTask]:
    bot = pb.Bot(
        name=HOSTILE_BOT,
        purpose=pb.PURPOSE_HR,
        chat_model=pb.ModelRef(credential="openai", model="gpt-4o-mini"),
        embedding_model=pb.ModelRef(credential="openai", model="text-embedding-3-small"),
    )
    bot = (
        await both.stub.CreateBot(pb.CreateBotRequest(bot=bot), metadata=both.admin(), timeout=TIMEOUT)
    ).bot
    source = pb.AddSourceRequest(
        bot_id=bot.id, name="handbook", kind=pb.SOURCE_KIND_TEXT, data=HANDBOOK, filename="handbook.md"
    )
    task = (await both.stub.AddSource(source, metadata=both.admin(), timeout=TIMEOUT)).task
    async with asyncio.timeout(60):
        while task.state in (pb.TASK_STATE_QUEUED, pb.TASK_STATE_RUNNING):
            await asyncio.sleep(0.1)
            request = pb.GetIngestionTaskRequest(id=task.id)
            task = (await both.stub.GetIngestionTask(request, metadata=both.admin(), timeout=TIMEOUT)).task
    return bot, task


async def get_json(hut: HubUnderTest, path: str, token: str | None) -> tuple[int, Any]:
    headers = hut.headers(token) if token is not None else {}
    async with hut.http.get(hut.http_base + path, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def test_the_chatbot_page_shows_bots_and_their_tasks(
    both: Both, browser_context: Any, screenshots_dir: Path
) -> None:
    bot, task = await bot_with_a_source(both)
    assert task.state == pb.TASK_STATE_SUCCEEDED, task
    console = Page(await browser_context.new_page(), both.hut.http_base, screenshots_dir)
    page = console.page
    await console.open()
    await console.sign_in(both.hut.tokens.admin)
    await page.wait_for_selector('#page-credentials[data-loading="false"]', timeout=STEP)
    await console.show("chatbot")
    row = page.locator(f'tr[data-bot="{bot.id}"]')
    cells = await row.locator("td").all_inner_texts()
    assert cells[:4] == [HOSTILE_BOT, "hr", "openai / gpt-4o-mini", "openai / text-embedding-3-small"]
    assert await page.evaluate("window.__xss") is None
    assert await page.locator("main img, main script").count() == 0
    await row.locator('[data-action="tasks"]').click()
    task_row = page.locator(f'#chatbot-tasks tr[data-task="{task.id}"]')
    await task_row.wait_for(timeout=STEP)
    task_cells = await task_row.locator("td").all_inner_texts()
    assert task_cells[1] == "SUCCEEDED"
    assert task_cells[2] == f"{task.items_done} / {task.items_total}"
    assert task_cells[3] == str(task.chunks_written)
    assert task.chunks_written >= 1
    assert task_cells[5] == ""  # no item errors
    await console.screenshot("chatbot")
    assert console.errors == [], console.errors


async def test_the_chatbot_page_is_hidden_without_a_chatbot(
    tmp_path: Path, browser_context: Any, screenshots_dir: Path
) -> None:
    async with running_hub(settings_for(tmp_path, database_url=None)) as hut:
        console = Page(await browser_context.new_page(), hut.http_base, screenshots_dir)
        await console.open()
        await console.sign_in(hut.tokens.admin)
        await console.page.wait_for_selector('#page-credentials[data-loading="false"]', timeout=STEP)
        assert await console.page.locator('nav a[data-page="keyring"]').count() == 1
        assert await console.page.locator('nav a[data-page="chatbot"]').count() == 0
        assert console.errors == [], console.errors


async def test_the_proxy_passes_only_its_two_paths_with_the_callers_token(both: Both) -> None:
    hut = both.hut
    bot, _ = await bot_with_a_source(both)
    status, body = await get_json(hut, "/console/chatbot/v1/bots", hut.tokens.admin)
    assert status == 200
    assert [b["id"] for b in body["bots"]] == [bot.id]
    status, body = await get_json(hut, f"/console/chatbot/v1/bots/{bot.id}/ingestion-tasks", hut.tokens.admin)
    assert status == 200
    assert [t["state"] for t in body["tasks"]] == ["TASK_STATE_SUCCEEDED"]

    # The caller's own token is what the chatbot judges: none, or another tenant's, sees nothing.
    status, body = await get_json(hut, "/console/chatbot/v1/bots", None)
    assert status == 401, body
    status, body = await get_json(hut, "/console/chatbot/v1/bots", hut.tokens.other_tenant)
    assert (status, body["bots"]) == (200, [])
    status, body = await get_json(
        hut, f"/console/chatbot/v1/bots/{bot.id}/ingestion-tasks", hut.tokens.other_tenant
    )
    assert status == 404, body

    # Any other path, method or a path trick is refused by the hub and never reaches the chatbot.
    for path in (
        "/console/chatbot/v1/bots/" + bot.id,
        "/console/chatbot/v1/bots/" + bot.id + ":ask",
        "/console/chatbot/healthz/",
        "/console/chatbot/v1/bots/..%2F..%2Fhealthz/ingestion-tasks",
        "/console/chatbot/v1/sessions",
    ):
        status, body = await get_json(hut, path, hut.tokens.admin)
        assert status == 404, path
        assert body["error"]["details"][0]["reason"] == "NOT_A_CHATBOT_PATH", path
    async with hut.http.post(
        hut.http_base + f"/console/chatbot/v1/bots/{bot.id}:ask",
        json={"question": "leave?"},
        headers=hut.headers(hut.tokens.admin),
    ) as response:
        assert response.status == 404


async def test_the_proxy_is_404_without_a_chatbot(tmp_path: Path) -> None:
    async with running_hub(settings_for(tmp_path, database_url=None)) as hut:
        for path in ("/console/chatbot/v1/bots", "/console/chatbot/v1/bots/bot_x/ingestion-tasks"):
            status, body = await get_json(hut, path, hut.tokens.admin)
            assert status == 404
            assert body["error"]["details"][0]["reason"] == "CHATBOT_NOT_CONFIGURED"


async def test_the_proxy_says_when_the_chatbot_is_down(tmp_path: Path) -> None:
    # A port nothing listens on: the chatbot is configured but not running.
    settings = settings_for(tmp_path, database_url=None, chatbot_url=f"http://127.0.0.1:{free_port()}")
    async with running_hub(settings) as hut:
        status, body = await get_json(hut, "/console/chatbot/v1/bots", hut.tokens.admin)
        assert status == 503
        assert body["error"]["details"][0]["reason"] == "CHATBOT_UNAVAILABLE"
