"""The link between a call's two media ends, which may live in different worker processes.

A call's audio arrives on the provider's websocket (the hub's HTTP port) and its agent
attaches with CallMedia (the gRPC port); with SO_REUSEPORT the kernel may hand the two
connections to different workers. They meet at a Unix socket named by the call id in
the hub's media directory, shared by the workers of one hub (0700, made by the
supervisor, or by the hub itself when it serves alone): the provider end listens, the
agent end connects. One code path whether the ends share a process or not; the hop is
a local socket write (tens of microseconds).

Frames: one type byte, a 4-byte big-endian length, the payload. Audio on the link is
always linear16 mono at the rate the agent chose; the provider end converts.
Only one host: a deployment of several hosts must route a call's provider websocket and
its CallMedia to the same host (e.g. by call id at the load balancer).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

HEADER = struct.Struct(">BI")
MAX_PAYLOAD = 256 * 1024
# The provider end's socket is looked for this often while the agent waits for the call
# to be answered.
ATTACH_POLL_SECONDS = 0.02


class Kind(IntEnum):
    # provider end -> agent end
    START = 1  # JSON: call id, provider call id, from, to, parameters
    AUDIO = 2  # linear16 at the agent's rate
    DTMF = 3
    MARK = 4  # a mark the agent sent has been played
    STOP = 5  # JSON: reason
    REFUSED = 6  # UTF-8: why the agent cannot attach
    # agent end -> provider end
    HELLO = 10  # JSON: sample_rate_hz
    PLAY = 11  # linear16 at the agent's rate, queued and paced out
    PLAY_MARK = 12
    CLEAR = 13


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Kind
    payload: bytes = b""


class LinkClosed(Exception):
    """The other end went away."""


def socket_path(media_dir: str, call_id: str) -> str:
    return str(Path(media_dir) / f"{call_id}.sock")


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    try:
        header = await reader.readexactly(HEADER.size)
        kind, length = HEADER.unpack(header)
        if length > MAX_PAYLOAD:
            raise LinkClosed(f"a media link frame of {length} bytes (at most {MAX_PAYLOAD})")
        payload = await reader.readexactly(length) if length else b""
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise LinkClosed(str(exc) or type(exc).__name__) from None
    try:
        return Frame(Kind(kind), payload)
    except ValueError:
        raise LinkClosed(f"unknown media link frame type {kind}") from None


def encode(kind: Kind, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def write_frame(writer: asyncio.StreamWriter, kind: Kind, payload: bytes = b"") -> None:
    """Queue a frame; large payloads go in several frames of the same kind."""
    if len(payload) <= MAX_PAYLOAD:
        writer.write(encode(kind, payload))
        return
    for start in range(0, len(payload), MAX_PAYLOAD):
        writer.write(encode(kind, payload[start : start + MAX_PAYLOAD]))


async def listen(
    media_dir: str,
    call_id: str,
    on_agent: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> asyncio.Server | None:
    """The provider end's listener for `call_id`, or None when another live provider end
    of the same call listens already. A socket file left by a worker that died is removed."""
    path = socket_path(media_dir, call_id)
    if await _alive(path):
        return None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return await asyncio.start_unix_server(on_agent, path=path)


async def _alive(path: str) -> bool:
    try:
        _, writer = await asyncio.open_unix_connection(path)
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
            return False
        raise
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return True


async def connect(media_dir: str, call_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """The agent end's connection to the call's provider end, or None when it is not there (yet)."""
    try:
        return await asyncio.open_unix_connection(socket_path(media_dir, call_id))
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
            return None
        raise


def remove(media_dir: str, call_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path(media_dir, call_id))
