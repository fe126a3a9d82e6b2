"""The chatbot layer's records on both databases: bots, sources, ingestion tasks, history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chatbot import schema
from chatbot.bots import BotStore
from chatbot.catalog import Catalog
from chatbot.db import Database, DatabaseError, open_database
from chatbot.errors import AlreadyExists, InvalidArgument, NotFound
from chatbot.history import History
from chatbot.tasks import TaskQueue, record_error
from chatbot.v1 import chatbot_pb2 as pb


@pytest.fixture
async def db(backend_url: str) -> AsyncIterator[Database]:
    database = await open_database(backend_url)
    await schema.migrate(database)
    try:
        yield database
    finally:
        await database.close()


def a_bot(name: str = "Helpdesk") -> pb.Bot:
    return pb.Bot(
        name=name,
        purpose=pb.PURPOSE_SUPPORT,
        chat_model=pb.ModelRef(credential="openai-main", model="gpt-4o-mini"),
        embedding_model=pb.ModelRef(credential="local", model="all-MiniLM-L6-v2"),
    )


async def test_migrations_apply_once(db: Database) -> None:
    assert await schema.migrate(db) == []


async def test_an_unknown_database_scheme_is_named() -> None:
    with pytest.raises(DatabaseError, match="'mysql'"):
        await open_database("mysql://localhost/x")


async def test_a_bot_gets_defaults_and_round_trips(db: Database) -> None:
    bots = BotStore(db)
    created = await bots.create("acme", a_bot())
    assert created.id.startswith("bot_")
    assert (created.top_k, created.retention_days, created.history_token_budget) == (5, 90, 2000)
    assert created.score_threshold == pytest.approx(0.25)
    assert await bots.get("acme", created.id) == created


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": " "}, "bot.name"),
        ({"purpose": pb.PURPOSE_UNSPECIFIED}, "bot.purpose"),
        ({"purpose": pb.PURPOSE_CUSTOM}, "bot.system_prompt"),
        ({"top_k": 51}, "bot.top_k"),
        ({"score_threshold": 1.5}, "bot.score_threshold"),
        ({"retention_days": -1}, "bot.retention_days"),
    ],
)
async def test_a_bad_bot_names_the_field(db: Database, change: dict[str, object], field: str) -> None:
    bot = a_bot()
    for key, value in change.items():
        setattr(bot, key, value)
    with pytest.raises(InvalidArgument) as raised:
        await BotStore(db).create("acme", bot)
    assert raised.value.field == field


async def test_a_bot_needs_its_models(db: Database) -> None:
    bot = a_bot()
    bot.ClearField("embedding_model")
    with pytest.raises(InvalidArgument, match=r"bot\.embedding_model"):
        await BotStore(db).create("acme", bot)


async def test_bots_are_per_tenant(db: Database) -> None:
    bots = BotStore(db)
    mine = await bots.create("acme", a_bot())
    # The same name in another tenant is another bot; in the same tenant it is refused.
    await bots.create("globex", a_bot())
    with pytest.raises(AlreadyExists):
        await bots.create("acme", a_bot())
    with pytest.raises(NotFound):
        await bots.get("globex", mine.id)
    with pytest.raises(NotFound):
        await bots.delete("globex", mine.id)
    assert [b.id for b in (await bots.page("acme", page_size=0, after=""))[0]] == [mine.id]


async def test_bots_page_in_order(db: Database) -> None:
    bots = BotStore(db)
    ids = sorted([(await bots.create("acme", a_bot(f"bot {n}"))).id for n in range(5)])
    first, token = await bots.page("acme", page_size=2, after="")
    second, token2 = await bots.page("acme", page_size=2, after=token)
    third, token3 = await bots.page("acme", page_size=2, after=token2)
    assert [b.id for b in first + second + third] == ids
    assert token3 == ""


async def test_update_changes_only_the_masked_fields(db: Database) -> None:
    bots = BotStore(db)
    bot = await bots.create("acme", a_bot())
    changes = pb.Bot(id=bot.id, greeting="Hi!", top_k=9)
    updated = await bots.update("acme", changes, ["greeting"])
    assert (updated.greeting, updated.top_k, updated.name) == ("Hi!", 5, "Helpdesk")
    with pytest.raises(InvalidArgument, match="cannot update id"):
        await bots.update("acme", changes, ["id"])
    cleared = await bots.update("acme", pb.Bot(id=bot.id), ["rerank_model"])
    assert not cleared.HasField("rerank_model")


async def test_a_source_name_keeps_its_id(db: Database) -> None:
    bot = await BotStore(db).create("acme", a_bot())
    catalog = Catalog(db)
    first = await catalog.register("acme", bot.id, "handbook", pb.SOURCE_KIND_PDF, "handbook.pdf")
    await catalog.ingested("acme", first.id, "abc", 12)
    again = await catalog.register("acme", bot.id, "handbook", pb.SOURCE_KIND_PDF, "handbook-v2.pdf")
    assert (again.id, again.content_hash, again.chunk_count, again.origin) == (
        first.id,
        "abc",
        12,
        "handbook-v2.pdf",
    )
    with pytest.raises(InvalidArgument, match="another kind"):
        await catalog.register("acme", bot.id, "handbook", pb.SOURCE_KIND_TEXT, "x.txt")
    with pytest.raises(NotFound):
        await catalog.delete("globex", bot.id, first.id)
    await catalog.delete("acme", bot.id, first.id)
    assert (await catalog.page("acme", bot.id, page_size=0, after=""))[0] == []


async def test_a_task_is_claimed_once_and_an_expired_lease_is_claimed_again(db: Database) -> None:
    bot = await BotStore(db).create("acme", a_bot())
    queue = TaskQueue(db)
    task = await queue.enqueue(
        "acme", bot.id, source_id="src_1", source_name="faq", kind=pb.SOURCE_KIND_QA, data=b"q,a\n"
    )
    assert task.state == pb.TASK_STATE_QUEUED
    claimed = await queue.claim("worker-1", lease_seconds=60)
    assert claimed is not None
    assert claimed.data == b"q,a\n"
    assert await queue.claim("worker-2", lease_seconds=60) is None
    # worker-1 dies: once its lease is over, worker-2 takes the task and worker-1 may not finish it.
    await db.execute("UPDATE ingestion_tasks SET lease_until_ms = 0")
    taken = await queue.claim("worker-2", lease_seconds=60)
    assert taken is not None
    assert taken.id == claimed.id
    assert not await queue.progress(claimed, "worker-1", done=1, total=2, chunks=1, lease_seconds=60)
    record_error(taken, "row 3", "no answer")
    assert await queue.progress(taken, "worker-2", done=1, total=2, chunks=1, lease_seconds=60)
    assert await queue.finish(taken, "worker-2", done=2, total=2, chunks=1)
    done = await queue.get("acme", task.id)
    assert (done.state, done.items_done, done.chunks_written) == (pb.TASK_STATE_PARTIAL, 2, 1)
    assert [(e.item, e.message) for e in done.errors] == [("row 3", "no answer")]
    assert await queue.pending_count() == 0
    with pytest.raises(NotFound):
        await queue.get("globex", task.id)
    row = await db.fetch_one("SELECT data FROM ingestion_tasks WHERE id = $1", task.id)
    assert row is not None
    assert row["data"] is None


async def test_replicas_never_claim_the_same_task(db: Database) -> None:
    bot = await BotStore(db).create("acme", a_bot())
    queue = TaskQueue(db)
    for n in range(20):
        await queue.enqueue(
            "acme", bot.id, source_id=f"src_{n}", source_name=f"s{n}", kind=pb.SOURCE_KIND_TEXT
        )
    claims = await asyncio.gather(*(queue.claim(f"w{n}", lease_seconds=60) for n in range(30)))
    ids = [c.id for c in claims if c is not None]
    assert len(ids) == 20
    assert len(set(ids)) == 20


async def test_history_keeps_turns_within_the_token_budget(db: Database) -> None:
    bot = await BotStore(db).create("acme", a_bot())
    history = History(db)
    session = await history.start("acme", bot.id, pb.CHANNEL_TEXT)
    for n in range(6):
        role = pb.MESSAGE_ROLE_USER if n % 2 == 0 else pb.MESSAGE_ROLE_ASSISTANT
        await history.append("acme", session, role, f"turn {n}", tokens=100)
    turns = await history.recent_turns("acme", session, token_budget=350)
    assert [t.text for t in turns] == ["turn 3", "turn 4", "turn 5"]
    cited = pb.Citation(source_id="src_1", source_name="handbook", title="Leave", page=3, score=0.8)
    await history.append(
        "acme", session, pb.MESSAGE_ROLE_ASSISTANT, "with a source", tokens=10, citations=[cited]
    )
    exported = await history.export("acme", session)
    assert (exported.tokens, exported.message_count) == (610, 7)
    assert exported.messages[-1].citations[0] == cited
    assert [m.text for m in exported.messages][:2] == ["turn 0", "turn 1"]
    with pytest.raises(NotFound):
        await history.export("globex", session)
    with pytest.raises(NotFound):
        await history.check("acme", "another-bot", session)


async def test_purge_deletes_only_expired_sessions(db: Database) -> None:
    bot = await BotStore(db).create("acme", a_bot())
    history = History(db)
    old = await history.start("acme", bot.id, pb.CHANNEL_PHONE)
    fresh = await history.start("acme", bot.id, pb.CHANNEL_TEXT)
    await history.append("acme", old, pb.MESSAGE_ROLE_USER, "hello", tokens=1)
    day_ms = 86_400_000
    await db.execute("UPDATE sessions SET updated_ms = updated_ms - $1 WHERE id = $2", 91 * day_ms, old)
    assert await history.purge_expired({bot.id: 90}) == 1
    assert [s.id for s in (await history.page("acme", bot.id, page_size=0, after=""))[0]] == [fresh]
    row = await db.fetch_one("SELECT COUNT(*) AS n FROM messages")
    assert row is not None
    assert int(row["n"]) == 0


async def test_deleting_a_bot_deletes_what_it_owns(db: Database) -> None:
    bots = BotStore(db)
    bot = await bots.create("acme", a_bot())
    await Catalog(db).register("acme", bot.id, "faq", pb.SOURCE_KIND_QA, "faq.csv")
    await TaskQueue(db).enqueue("acme", bot.id, source_id="s", source_name="faq", kind=pb.SOURCE_KIND_QA)
    session = await History(db).start("acme", bot.id, pb.CHANNEL_TEXT)
    await History(db).append("acme", session, pb.MESSAGE_ROLE_USER, "hi", tokens=1)
    await bots.delete("acme", bot.id)
    for table in ("sources", "ingestion_tasks", "sessions", "messages"):
        row = await db.fetch_one(f"SELECT COUNT(*) AS n FROM {table}")  # noqa: S608 - fixed table names
        assert row is not None
        assert int(row["n"]) == 0, table
