"""hub-chatbot: serve the chatbot layer, and manage and ask its bots from a terminal.

    hub-chatbot serve                                    (settings: chatbot.config)
    hub-chatbot bot create NAME --purpose hr --chat openai/gpt-4o-mini --embed local/all-MiniLM-L6-v2
    hub-chatbot bot list
    hub-chatbot ingest BOT PATH_OR_URL [--name NAME] [--no-wait]
    hub-chatbot ask BOT "question" [--session ID]
    hub-chatbot ask-voice BOT question.wav --out answer.mp3

Every command but serve talks to a running chatbot server over gRPC (--target, or
CHATBOT_TARGET, default 127.0.0.1:9014) with the caller's hub token (HUB_TOKEN, or
--token-file). A folder is ingested file by file, each file a source named by its path
under the folder; a URL is a website.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from chatbot.v1 import chatbot_pb2 as pb
from chatbot.v1 import chatbot_pb2_grpc

_PURPOSES = {
    "support": pb.PURPOSE_SUPPORT,
    "sales": pb.PURPOSE_SALES,
    "hr": pb.PURPOSE_HR,
    "education": pb.PURPOSE_EDUCATION,
    "custom": pb.PURPOSE_CUSTOM,
}
_KINDS = {
    ".md": pb.SOURCE_KIND_TEXT,
    ".markdown": pb.SOURCE_KIND_TEXT,
    ".txt": pb.SOURCE_KIND_TEXT,
    ".pdf": pb.SOURCE_KIND_PDF,
    ".csv": pb.SOURCE_KIND_QA,
    ".xlsx": pb.SOURCE_KIND_QA,
}
TIMEOUT = 120.0


class CliError(Exception):
    """A usage problem, said in one line."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve()
        return asyncio.run(_client_command(args))
    except CliError as error:
        print(f"hub-chatbot: {error}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as error:
        print(f"hub-chatbot: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub-chatbot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default=os.environ.get("CHATBOT_TARGET", "127.0.0.1:9014"))
    parser.add_argument("--token-file", help="a file holding your hub token (default: $HUB_TOKEN)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the chatbot server (settings from CHATBOT_* variables)")
    bot = commands.add_parser("bot", help="create or list bots").add_subparsers(
        dest="bot_command", required=True
    )
    create = bot.add_parser("create")
    create.add_argument("name")
    create.add_argument("--purpose", choices=sorted(_PURPOSES), default="support")
    create.add_argument("--chat", required=True, help="credential/model or a route name")
    create.add_argument("--embed", required=True, help="credential/model")
    create.add_argument("--rerank", help="credential/model")
    create.add_argument("--system-prompt", default="")
    create.add_argument("--greeting", default="")
    create.add_argument("--fallback", default="")
    create.add_argument("--tts", help="credential/model for spoken answers")
    create.add_argument("--voice", default="")
    create.add_argument("--stt", help="credential/model for spoken questions")
    bot.add_parser("list")
    ingest = commands.add_parser("ingest", help="add a file, a folder or a website to a bot")
    ingest.add_argument("bot")
    ingest.add_argument("source", help="a file, a folder or an http(s) URL")
    ingest.add_argument("--name", help="the source's name (default: the file's path or the URL)")
    ingest.add_argument("--no-wait", action="store_true", help="queue and return")
    ask = commands.add_parser("ask", help="ask a bot; the answer streams in")
    ask.add_argument("bot")
    ask.add_argument("question")
    ask.add_argument("--session", default="")
    voice = commands.add_parser("ask-voice", help="ask with a recording; write the spoken answer")
    voice.add_argument("bot")
    voice.add_argument("audio", type=Path)
    voice.add_argument("--out", type=Path, required=True)
    voice.add_argument("--format", default="mp3", choices=["mp3", "wav", "ogg", "flac"])
    return parser


def _serve() -> int:
    from chatbot.config import Settings
    from chatbot.server import Chatbot

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def run() -> None:
        chatbot = await Chatbot.open(Settings.from_env())
        await chatbot.serve()
        try:
            await asyncio.Event().wait()
        finally:
            await chatbot.close()

    try:
        import uvloop

        uvloop.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        return Path(args.token_file).read_text().strip()
    token = os.environ.get("HUB_TOKEN", "")
    if not token:
        raise CliError("no hub token: set HUB_TOKEN or pass --token-file")
    return token


def _model(text: str | None) -> pb.ModelRef | None:
    if not text:
        return None
    credential, slash, model = text.partition("/")
    return pb.ModelRef(credential=credential, model=model) if slash else pb.ModelRef(model=credential)


def _required_model(text: str, option: str) -> pb.ModelRef:
    model = _model(text)
    if model is None or not model.model:
        raise CliError(f"{option}: write credential/model, or a route name")
    return model


async def _client_command(args: argparse.Namespace) -> int:
    metadata = (("authorization", f"Bearer {_token(args)}"),)
    async with grpc.aio.insecure_channel(args.target) as channel:
        stub = chatbot_pb2_grpc.ChatbotServiceStub(channel)
        if args.command == "bot":
            return await (
                _create_bot(stub, args, metadata)
                if args.bot_command == "create"
                else _list_bots(stub, metadata)
            )
        if args.command == "ingest":
            return await _ingest(stub, args, metadata)
        if args.command == "ask":
            return await _ask(stub, args, metadata)
        return await _ask_voice(stub, args, metadata)


async def _create_bot(
    stub: chatbot_pb2_grpc.ChatbotServiceStub, args: argparse.Namespace, metadata: Any
) -> int:
    bot = pb.Bot(
        name=args.name,
        purpose=_PURPOSES[args.purpose],
        system_prompt=args.system_prompt,
        greeting=args.greeting,
        fallback_answer=args.fallback,
        voice=pb.VoiceSettings(tts=_model(args.tts), stt=_model(args.stt), voice=args.voice),
    )
    bot.chat_model.CopyFrom(_required_model(args.chat, "--chat"))
    bot.embedding_model.CopyFrom(_required_model(args.embed, "--embed"))
    if args.rerank:
        bot.rerank_model.CopyFrom(_required_model(args.rerank, "--rerank"))
    created = (await stub.CreateBot(pb.CreateBotRequest(bot=bot), metadata=metadata, timeout=TIMEOUT)).bot
    print(created.id)
    return 0


async def _list_bots(stub: chatbot_pb2_grpc.ChatbotServiceStub, metadata: Any) -> int:
    for bot in (await stub.ListBots(pb.ListBotsRequest(), metadata=metadata, timeout=TIMEOUT)).bots:
        print(f"{bot.id}\t{bot.name}\t{pb.Purpose.Name(bot.purpose).removeprefix('PURPOSE_').lower()}")
    return 0


def _requests(bot: str, source: str, name: str | None) -> list[pb.AddSourceRequest]:
    if source.startswith(("http://", "https://")):
        return [pb.AddSourceRequest(bot_id=bot, name=name or source, kind=pb.SOURCE_KIND_WEBSITE, url=source)]
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _KINDS)
        if not files:
            raise CliError(f"{path}: no .md, .txt, .pdf, .csv or .xlsx file in it")
        return [_file_request(bot, f, str(f.relative_to(path))) for f in files]
    if not path.is_file():
        raise CliError(f"{source}: not a file, a folder or an http(s) URL")
    return [_file_request(bot, path, name or path.name)]


def _file_request(bot: str, path: Path, name: str) -> pb.AddSourceRequest:
    kind = _KINDS.get(path.suffix.lower())
    if kind is None:
        raise CliError(f"{path}: unsupported file type (.md, .txt, .pdf, .csv, .xlsx)")
    return pb.AddSourceRequest(bot_id=bot, name=name, kind=kind, data=path.read_bytes(), filename=path.name)


async def _ingest(stub: chatbot_pb2_grpc.ChatbotServiceStub, args: argparse.Namespace, metadata: Any) -> int:
    tasks = [
        (await stub.AddSource(request, metadata=metadata, timeout=TIMEOUT)).task
        for request in _requests(args.bot, args.source, args.name)
    ]
    if args.no_wait:
        for task in tasks:
            print(task.id)
        return 0
    failed = 0
    for task in tasks:
        while task.state in (pb.TASK_STATE_QUEUED, pb.TASK_STATE_RUNNING):
            await asyncio.sleep(0.5)
            task = (
                await stub.GetIngestionTask(pb.GetIngestionTaskRequest(id=task.id), metadata=metadata)
            ).task
        state = pb.TaskState.Name(task.state).removeprefix("TASK_STATE_").lower()
        note = " (unchanged)" if task.skipped_unchanged else ""
        print(f"{task.source_id}\t{state}{note}\t{task.chunks_written} chunks")
        for error in task.errors:
            print(f"  {error.item}: {error.message}")
        failed += task.state == pb.TASK_STATE_FAILED
    return 1 if failed else 0


async def _ask(stub: chatbot_pb2_grpc.ChatbotServiceStub, args: argparse.Namespace, metadata: Any) -> int:
    request = pb.StreamAskRequest(bot_id=args.bot, question=args.question, session_id=args.session)
    async for event in stub.StreamAsk(request, metadata=metadata, timeout=TIMEOUT):
        if event.HasField("end"):
            print()
            for number, citation in enumerate(event.end.citations, start=1):
                where = citation.url or citation.source_name
                page = f", page {citation.page}" if citation.page else ""
                print(f"[{number}] {where} {citation.title}{page} (score {citation.score:.2f})")
            print(f"session {event.end.session_id}")
        else:
            print(event.delta, end="", flush=True)
    return 0


async def _ask_voice(
    stub: chatbot_pb2_grpc.ChatbotServiceStub, args: argparse.Namespace, metadata: Any
) -> int:
    request = pb.AskVoiceRequest(bot_id=args.bot, audio=args.audio.read_bytes(), answer_format=args.format)
    answer = await stub.AskVoice(request, metadata=metadata, timeout=TIMEOUT)
    args.out.write_bytes(answer.audio)
    print(f"heard: {answer.transcript}")
    print(f"answer: {answer.answer.answer}")
    print(f"wrote {args.out} ({answer.audio_mime_type}, {len(answer.audio)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
