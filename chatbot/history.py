"""Conversation history: sessions and their messages, with token counts, and retention.

A session's token total and message count are kept on the session row, updated in the
same transaction as the message, so listing never sums messages. Retention is per bot
(its retention_days): `purge_expired` deletes sessions last active before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from chatbot.db import Database, now_ms
from chatbot.errors import InvalidArgument, NotFound
from chatbot.ids import new_id
from chatbot.v1 import chatbot_pb2 as pb

MAX_PAGE_SIZE = 100
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Turn:
    """A message as a prompt needs it: who said what, and what it cost in tokens."""

    role: int  # pb.MessageRole
    text: str
    tokens: int


class History:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def start(self, tenant: str, bot_id: str, channel: int) -> str:
        now = now_ms()
        session_id = new_id("ses")
        await self._db.execute(
            "INSERT INTO sessions"
            " (id, tenant, bot_id, channel, tokens, message_count, created_ms, updated_ms)"
            " VALUES ($1, $2, $3, $4, 0, 0, $5, $5)",
            session_id,
            tenant,
            bot_id,
            channel,
            now,
        )
        return session_id

    async def check(self, tenant: str, bot_id: str, session_id: str) -> None:
        """NotFound unless the session is this tenant's and this bot's."""
        row = await self._db.fetch_one(
            "SELECT 1 AS found FROM sessions WHERE id = $1 AND tenant = $2 AND bot_id = $3",
            session_id,
            tenant,
            bot_id,
        )
        if row is None:
            raise NotFound(f"no session {session_id!r} for this bot")

    async def append(
        self,
        tenant: str,
        session_id: str,
        role: int,
        text: str,
        tokens: int,
        citations: Sequence[pb.Citation] = (),
    ) -> str:
        now = now_ms()
        message_id = new_id("msg")
        cited = orjson.dumps([_citation_dict(c) for c in citations]).decode()
        async with self._db.transaction() as tx:
            updated = await tx.execute(
                "UPDATE sessions SET tokens = tokens + $3, message_count = message_count + 1, updated_ms = $4"
                " WHERE id = $1 AND tenant = $2",
                session_id,
                tenant,
                tokens,
                now,
            )
            if not updated:
                raise NotFound(f"no session {session_id!r}")
            row = await tx.fetch_one("SELECT message_count FROM sessions WHERE id = $1", session_id)
            assert row is not None  # updated just above, in this transaction
            await tx.execute(
                "INSERT INTO messages (id, session_id, seq, role, text, tokens, citations, created_ms)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                message_id,
                session_id,
                int(row["message_count"]),
                role,
                text,
                tokens,
                cited,
                now,
            )
        return message_id

    async def recent_turns(self, tenant: str, session_id: str, token_budget: int) -> list[Turn]:
        """The latest turns whose tokens fit the budget, oldest first (whole turns only)."""
        rows = await self._db.fetch_all(
            "SELECT m.role, m.text, m.tokens FROM messages m JOIN sessions s ON s.id = m.session_id"
            " WHERE m.session_id = $1 AND s.tenant = $2 ORDER BY m.seq DESC LIMIT 200",
            session_id,
            tenant,
        )
        turns: list[Turn] = []
        spent = 0
        for row in rows:
            tokens = int(row["tokens"])
            if spent + tokens > token_budget:
                break
            spent += tokens
            turns.append(Turn(role=int(row["role"]), text=str(row["text"]), tokens=tokens))
        turns.reverse()
        return turns

    async def page(
        self, tenant: str, bot_id: str, *, page_size: int, after: str
    ) -> tuple[list[pb.Session], str]:
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(page_size or 50, MAX_PAGE_SIZE)
        rows = await self._db.fetch_all(
            "SELECT * FROM sessions WHERE tenant = $1 AND bot_id = $2 AND id > $3 ORDER BY id LIMIT $4",
            tenant,
            bot_id,
            after,
            size + 1,
        )
        sessions = [_session(row) for row in rows[:size]]
        return sessions, (sessions[-1].id if len(rows) > size else "")

    async def export(self, tenant: str, session_id: str) -> pb.Session:
        row = await self._db.fetch_one(
            "SELECT * FROM sessions WHERE id = $1 AND tenant = $2", session_id, tenant
        )
        if row is None:
            raise NotFound(f"no session {session_id!r}")
        session = _session(row)
        for message in await self._db.fetch_all(
            "SELECT * FROM messages WHERE session_id = $1 ORDER BY seq", session_id
        ):
            session.messages.append(_message(message))
        return session

    async def delete(self, tenant: str, session_id: str) -> None:
        if not await self._db.execute(
            "DELETE FROM sessions WHERE id = $1 AND tenant = $2", session_id, tenant
        ):
            raise NotFound(f"no session {session_id!r}")

    async def purge_expired(self, retention_days_by_bot: dict[str, int], *, at_ms: int | None = None) -> int:
        """Deletes sessions idle for longer than their bot's retention; returns how many."""
        now = now_ms() if at_ms is None else at_ms
        purged = 0
        for bot_id, days in retention_days_by_bot.items():
            purged += await self._db.execute(
                "DELETE FROM sessions WHERE bot_id = $1 AND updated_ms < $2", bot_id, now - days * _DAY_MS
            )
        return purged


def _citation_dict(citation: pb.Citation) -> dict[str, Any]:
    return {
        "source_id": citation.source_id,
        "source_name": citation.source_name,
        "title": citation.title,
        "page": citation.page,
        "url": citation.url,
        "score": citation.score,
    }


def _session(row: Any) -> pb.Session:
    session = pb.Session(
        id=row["id"],
        bot_id=row["bot_id"],
        channel=pb.Channel.ValueType(int(row["channel"])),
        tokens=int(row["tokens"]),
        message_count=int(row["message_count"]),
    )
    session.create_time.FromMilliseconds(int(row["created_ms"]))
    session.update_time.FromMilliseconds(int(row["updated_ms"]))
    return session


def _message(row: Any) -> pb.Message:
    message = pb.Message(
        id=row["id"],
        role=pb.MessageRole.ValueType(int(row["role"])),
        text=row["text"],
        tokens=int(row["tokens"]),
    )
    for cited in orjson.loads(row["citations"]):
        message.citations.append(pb.Citation(**cited))
    message.create_time.FromMilliseconds(int(row["created_ms"]))
    return message
