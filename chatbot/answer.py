"""One answer: retrieve, decide, prompt, stream, cite, remember.

The path of a question: the bot's passages above its threshold (chatbot.retrieval,
through the hub's Embed and, when the bot has one, Rerank); none -> the bot's fallback
answer, with no model call; otherwise the prompt (chatbot.prompts) with as much
history as the bot's token budget allows, streamed from the hub's StreamChat. The
question and the answer are stored as the session's next two turns once the answer is
whole; an answer that fails half-way stores the question only.

Citations: the passages the answer cites by number ([1], [2]...), or, when it cites
none, every passage it was given, one per (source, page).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from chatbot.auth import Caller
from chatbot.bots import BotStore
from chatbot.errors import InvalidArgument
from chatbot.history import History
from chatbot.prompts import Passage, PastTurn, chat_messages
from chatbot.v1 import chatbot_pb2 as pb

DEFAULT_FALLBACK = "I'm sorry, I don't have information about that in my documents."
MAX_QUESTION_CHARS = 4000
_CITED = re.compile(r"\[(\d{1,3})\]")


class Retriever(Protocol):
    async def retrieve(self, caller: Caller, bot: pb.Bot, question: str) -> list[Passage]: ...


@dataclass(frozen=True, slots=True)
class ChatUsage:
    input_tokens: int
    output_tokens: int


class ChatModel(Protocol):
    """The hub's StreamChat: text deltas, then the usage, as (text, None)... then ("", usage)."""

    def stream(
        self, caller: Caller, model: pb.ModelRef, messages: list[tuple[str, str]]
    ) -> AsyncIterator[tuple[str, ChatUsage | None]]: ...


class Answerer:
    def __init__(
        self,
        bots: BotStore,
        history: History,
        retriever: Retriever,
        chat: ChatModel,
        count_tokens: Callable[[str], int],
    ) -> None:
        self._bots = bots
        self._history = history
        self._retriever = retriever
        self._chat = chat
        self._count_tokens = count_tokens

    async def stream(
        self, caller: Caller, bot_id: str, question: str, session_id: str, channel: int = pb.CHANNEL_TEXT
    ) -> AsyncGenerator[pb.StreamAskResponse, None]:
        question = _checked_question(question)
        bot = await self._bots.get(caller.tenant, bot_id)
        if session_id:
            await self._history.check(caller.tenant, bot.id, session_id)
        else:
            session_id = await self._history.start(caller.tenant, bot.id, channel)
        passages = await self._retriever.retrieve(caller, bot, question)
        question_tokens = self._count_tokens(question)
        if not passages:
            async for event in self._fallback(caller, bot, session_id, question, question_tokens):
                yield event
            return
        past = await self._history.recent_turns(caller.tenant, session_id, bot.history_token_budget)
        messages = chat_messages(bot, question, passages, [PastTurn(t.role, t.text) for t in past])
        await self._history.append(caller.tenant, session_id, pb.MESSAGE_ROLE_USER, question, question_tokens)
        pieces: list[str] = []
        usage = ChatUsage(0, 0)
        async for text, final in self._chat.stream(caller, bot.chat_model, messages):
            if text:
                pieces.append(text)
                yield pb.StreamAskResponse(delta=text)
            if final is not None:
                usage = final
        answer = "".join(pieces)
        citations = cited(answer, passages)
        output_tokens = usage.output_tokens or self._count_tokens(answer)
        await self._history.append(
            caller.tenant, session_id, pb.MESSAGE_ROLE_ASSISTANT, answer, output_tokens, citations
        )
        yield pb.StreamAskResponse(
            end=pb.AskResponse(
                answer=answer,
                citations=citations,
                usage=pb.TokenUsage(
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    total_tokens=usage.input_tokens + usage.output_tokens,
                ),
                session_id=session_id,
            )
        )

    async def ask(self, caller: Caller, bot_id: str, question: str, session_id: str) -> pb.AskResponse:
        async with contextlib.aclosing(self.stream(caller, bot_id, question, session_id)) as events:
            async for event in events:
                if event.HasField("end"):
                    return event.end
        raise AssertionError("an answer stream always ends with its end event")  # pragma: no cover

    async def _fallback(
        self, caller: Caller, bot: pb.Bot, session_id: str, question: str, question_tokens: int
    ) -> AsyncIterator[pb.StreamAskResponse]:
        answer = bot.fallback_answer or DEFAULT_FALLBACK
        await self._history.append(caller.tenant, session_id, pb.MESSAGE_ROLE_USER, question, question_tokens)
        await self._history.append(
            caller.tenant, session_id, pb.MESSAGE_ROLE_ASSISTANT, answer, self._count_tokens(answer)
        )
        yield pb.StreamAskResponse(delta=answer)
        yield pb.StreamAskResponse(
            end=pb.AskResponse(answer=answer, usage=pb.TokenUsage(), session_id=session_id, fallback=True)
        )


def _checked_question(question: str) -> str:
    question = question.strip()
    if not question:
        raise InvalidArgument("question", "required")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidArgument("question", f"at most {MAX_QUESTION_CHARS} characters")
    return question


def cited(answer: str, passages: Sequence[Passage]) -> list[pb.Citation]:
    numbers = [int(n) for n in _CITED.findall(answer)]
    chosen = [passages[n - 1] for n in dict.fromkeys(numbers) if 1 <= n <= len(passages)]
    if not chosen:
        chosen = list(passages)
    citations: list[pb.Citation] = []
    seen: set[tuple[str, int, str]] = set()
    for passage in chosen:
        key = (passage.source_id, passage.page, passage.url)
        if key in seen:
            continue
        seen.add(key)
        citations.append(
            pb.Citation(
                source_id=passage.source_id,
                source_name=passage.source_name,
                title=passage.title,
                page=passage.page,
                url=passage.url,
                score=passage.score,
            )
        )
    return citations
