"""Bots: validated, defaulted and stored per tenant.

A bot is kept as its API message (chatbot.v1.Bot) in proto JSON, so that a new setting
needs no migration; name and tenant are columns too, for uniqueness and listing.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from chatbot.db import Conflict, Executor, now_ms
from chatbot.errors import AlreadyExists, InvalidArgument, NotFound
from chatbot.ids import new_id
from chatbot.v1 import chatbot_pb2 as pb

DEFAULT_TOP_K = 5
MAX_TOP_K = 50
# Measured on bench/chatbot_eval with all-MiniLM-L6-v2: 0.25 keeps recall@5 above 0.9 and still
# gives the fallback for questions far from the documents.
DEFAULT_SCORE_THRESHOLD = 0.25
DEFAULT_HISTORY_TOKENS = 2000
DEFAULT_RETENTION_DAYS = 90
MAX_NAME_CHARS = 100
MAX_PROMPT_CHARS = 20_000
MAX_PAGE_SIZE = 100

# Settings an update may change (the mask's paths); id and times are the store's.
UPDATABLE_FIELDS = frozenset(
    {
        "name",
        "purpose",
        "system_prompt",
        "chat_model",
        "embedding_model",
        "rerank_model",
        "voice",
        "greeting",
        "fallback_answer",
        "top_k",
        "score_threshold",
        "history_token_budget",
        "retention_days",
    }
)


def normalized(bot: pb.Bot) -> pb.Bot:
    """The bot with defaults filled in, or InvalidArgument naming the first bad field."""
    out = pb.Bot()
    out.CopyFrom(bot)
    out.name = out.name.strip()
    if not out.name:
        raise InvalidArgument("bot.name", "required")
    if len(out.name) > MAX_NAME_CHARS:
        raise InvalidArgument("bot.name", f"at most {MAX_NAME_CHARS} characters")
    if out.purpose == pb.PURPOSE_UNSPECIFIED:
        raise InvalidArgument("bot.purpose", "required: support, sales, hr, education or custom")
    if out.purpose == pb.PURPOSE_CUSTOM and not out.system_prompt.strip():
        raise InvalidArgument("bot.system_prompt", "required for a custom bot")
    if len(out.system_prompt) > MAX_PROMPT_CHARS:
        raise InvalidArgument("bot.system_prompt", f"at most {MAX_PROMPT_CHARS} characters")
    _check_model(out, "chat_model", required=True)
    _check_model(out, "embedding_model", required=True)
    _check_model(out, "rerank_model", required=False)
    if out.top_k == 0:
        out.top_k = DEFAULT_TOP_K
    if not 1 <= out.top_k <= MAX_TOP_K:
        raise InvalidArgument("bot.top_k", f"between 1 and {MAX_TOP_K}")
    if not out.HasField("score_threshold"):
        out.score_threshold = DEFAULT_SCORE_THRESHOLD
    if not -1.0 <= out.score_threshold <= 1.0:
        raise InvalidArgument("bot.score_threshold", "a cosine similarity, between -1 and 1")
    if out.history_token_budget == 0:
        out.history_token_budget = DEFAULT_HISTORY_TOKENS
    if out.history_token_budget < 0:
        raise InvalidArgument("bot.history_token_budget", "must not be negative")
    if out.retention_days == 0:
        out.retention_days = DEFAULT_RETENTION_DAYS
    if out.retention_days < 0:
        raise InvalidArgument("bot.retention_days", "must not be negative")
    return out


def _check_model(bot: pb.Bot, field: str, *, required: bool) -> None:
    if not _has(bot, field):
        if required:
            raise InvalidArgument(f"bot.{field}", "required: a hub credential and model, or a route")
        return
    ref: pb.ModelRef = getattr(bot, field)
    if not ref.model.strip():
        raise InvalidArgument(f"bot.{field}.model", "required")


class BotStore:
    def __init__(self, db: Executor) -> None:
        self._db = db

    async def create(self, tenant: str, bot: pb.Bot) -> pb.Bot:
        bot = normalized(bot)
        now = now_ms()
        bot.id = new_id("bot")
        bot.create_time.FromMilliseconds(now)
        bot.update_time.FromMilliseconds(now)
        try:
            await self._db.execute(
                "INSERT INTO bots (id, tenant, name, settings, created_ms, updated_ms)"
                " VALUES ($1, $2, $3, $4, $5, $5)",
                bot.id,
                tenant,
                bot.name,
                _settings(bot),
                now,
            )
        except Conflict:
            raise AlreadyExists(f"a bot named {bot.name!r} exists already") from None
        return bot

    async def get(self, tenant: str, bot_id: str) -> pb.Bot:
        row = await self._db.fetch_one(
            "SELECT settings FROM bots WHERE tenant = $1 AND id = $2", tenant, bot_id
        )
        if row is None:
            # The same answer for another tenant's bot: ids cannot be probed.
            raise NotFound(f"no bot {bot_id!r}")
        return _bot(row)

    async def page(self, tenant: str, *, page_size: int, after: str) -> tuple[list[pb.Bot], str]:
        """A page of bots in id order after `after` (a page token); the next token or ''."""
        size = _page_size(page_size)
        rows = await self._db.fetch_all(
            "SELECT id, settings FROM bots WHERE tenant = $1 AND id > $2 ORDER BY id LIMIT $3",
            tenant,
            after,
            size + 1,
        )
        bots = [_bot(row) for row in rows[:size]]
        return bots, (bots[-1].id if len(rows) > size else "")

    async def update(self, tenant: str, changes: pb.Bot, paths: list[str]) -> pb.Bot:
        unknown = sorted(set(paths) - UPDATABLE_FIELDS)
        if unknown:
            raise InvalidArgument("update_mask", f"cannot update {', '.join(unknown)}")
        current = await self.get(tenant, changes.id)
        for path in paths or sorted(UPDATABLE_FIELDS):
            _copy_field(changes, current, path)
        bot = normalized(current)
        now = now_ms()
        bot.update_time.FromMilliseconds(now)
        try:
            await self._db.execute(
                "UPDATE bots SET name = $3, settings = $4, updated_ms = $5 WHERE tenant = $1 AND id = $2",
                tenant,
                bot.id,
                bot.name,
                _settings(bot),
                now,
            )
        except Conflict:
            raise AlreadyExists(f"a bot named {bot.name!r} exists already") from None
        return bot

    async def delete(self, tenant: str, bot_id: str) -> None:
        if not await self._db.execute("DELETE FROM bots WHERE tenant = $1 AND id = $2", tenant, bot_id):
            raise NotFound(f"no bot {bot_id!r}")


def _copy_field(source: pb.Bot, target: pb.Bot, path: str) -> None:
    descriptor = pb.Bot.DESCRIPTOR.fields_by_name[path]
    if descriptor.message_type is not None or descriptor.has_presence:
        if _has(source, path):
            if descriptor.message_type is not None:
                getattr(target, path).CopyFrom(getattr(source, path))
            else:
                setattr(target, path, getattr(source, path))
        else:
            _clear(target, path)
    else:
        setattr(target, path, getattr(source, path))


def _has(message: Message, field: str) -> bool:
    # Message's own signature: the generated one accepts only literal field names.
    return message.HasField(field)


def _clear(message: Message, field: str) -> None:
    message.ClearField(field)


def _page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(requested or 50, MAX_PAGE_SIZE)


def _settings(bot: pb.Bot) -> str:
    return json_format.MessageToJson(bot, preserving_proto_field_name=True, indent=None, sort_keys=True)


def _bot(row: Any) -> pb.Bot:
    return json_format.Parse(row["settings"], pb.Bot())
