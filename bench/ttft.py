"""Time to first token of OpenAI-style streaming chat, over keep-alive HTTP/1.1, bounded in time.

wrk (compare.py --stream) times whole responses only. This sends the same streaming
body as compare.py (stream: true, stream_options.include_usage) on `--conns`
keep-alive connections for `--seconds`, and times each request from the moment it is
written to:
  ttfb  the first byte of the answer (status line);
  ttft  the end of the first SSE event whose choices[0].delta.content is non-empty;
  total the end of the answer (last chunk, or Content-Length reached).
A request counts as an error when the status is not 200, no token arrived, or the
connection failed; it is never retried. Prints one JSON object (percentiles in ms).

    python bench/ttft.py URL MODEL [--header "Name: value"]... [--conns 1] [--seconds 5]

The client is one Python process on uvloop: at high concurrency its own CPU time is
part of what it measures, equally for every target in the same run.
"""

# A benchmark tool: runs fixed local programs (wrk, h2load, py-spy, integration-hub) and
# opens only loopback http:// URLs it builds itself.

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

import orjson

BODY_TEXT = "Say hello."


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


class _Conn(asyncio.Protocol):
    """One keep-alive connection; answers one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._done: asyncio.Future[None] | None = None
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.t_first_byte = 0.0
        self.t_token = 0.0
        self.status = 0
        self._headers_done = False
        self._chunked = False
        self._remaining = -1  # Content-Length left, -1 when not known
        self._chunk_left = 0  # bytes left in the current chunk; -1 means the chunk's CRLF
        self._body = bytearray()  # de-chunked body not yet scanned for events
        self._buf.clear()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._done is not None and not self._done.done():
            if self._headers_done and not self._chunked and self._remaining < 0:
                self._done.set_result(None)  # body delimited by the close
            else:
                self._done.set_exception(ConnectionError("connection closed mid-answer"))

    def request(self, data: bytes) -> asyncio.Future[None]:
        self._reset()
        self._done = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(data)
        return self._done

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.t_first_byte:
            self.t_first_byte = now
        self._buf += data
        if not self._headers_done:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
            del self._buf[: end + 4]
            self.status = int(head[0].split()[1])
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    self._remaining = int(value)
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    self._chunked = True
            self._headers_done = True
        if self._chunked:
            self._dechunk()
        else:
            take = len(self._buf) if self._remaining < 0 else min(len(self._buf), self._remaining)
            self._body += self._buf[:take]
            del self._buf[:take]
            if self._remaining >= 0:
                self._remaining -= take
        self._scan(now)
        if not self._chunked and self._remaining == 0:
            self._finish(now)

    def _dechunk(self) -> None:
        buf = self._buf
        while buf:
            if self._chunk_left > 0:
                take = min(self._chunk_left, len(buf))
                self._body += buf[:take]
                del buf[:take]
                self._chunk_left -= take
                if self._chunk_left == 0:
                    self._chunk_left = -1
                continue
            if self._chunk_left == -1:  # the CRLF after a chunk's data
                if len(buf) < 2:
                    return
                del buf[:2]
                self._chunk_left = 0
                continue
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(buf[:line_end]).split(b";")[0], 16)
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n")  # no trailers expected: "0\r\n\r\n"
                if trailer_end < 0:
                    return
                del buf[: trailer_end + 4]
                self._scan(time.perf_counter())
                self._finish(time.perf_counter())
                return
            del buf[: line_end + 2]
            self._chunk_left = size

    def _scan(self, now: float) -> None:
        if self.t_token:
            self._body.clear()
            return
        while True:
            end = self._body.find(b"\n\n")
            sep = 2
            crlf = self._body.find(b"\r\n\r\n")
            if crlf >= 0 and (end < 0 or crlf < end):
                end, sep = crlf, 4
            if end < 0:
                return
            event = bytes(self._body[:end])
            del self._body[: end + sep]
            for line in event.splitlines():
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    continue
                try:
                    chunk = orjson.loads(payload)
                    content = chunk["choices"][0]["delta"].get("content")
                except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
                    continue
                if content:
                    self.t_token = now
                    self._body.clear()
                    return

    def _finish(self, now: float) -> None:
        self.t_end = now
        if self._done is not None and not self._done.done():
            self._done.set_result(None)


async def _worker(host: str, port: int, request: bytes, deadline: float, out: dict, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    conn: _Conn | None = None
    while time.perf_counter() < deadline:
        if conn is None or conn.closed:
            try:
                _, conn = await loop.create_connection(_Conn, host, port)
            except OSError:
                out["errors"] += 1
                await asyncio.sleep(0.05)
                continue
        started = time.perf_counter()
        try:
            await asyncio.wait_for(conn.request(request), timeout)
        except (TimeoutError, ConnectionError, OSError):
            out["errors"] += 1
            if conn.transport is not None:
                conn.transport.close()
            conn = None
            continue
        if conn.status != 200 or not conn.t_token:
            out["errors"] += 1
            if conn.status != 200:
                out["non_200"] += 1
            continue
        out["ttfb"].append((conn.t_first_byte - started) * 1000)
        out["ttft"].append((conn.t_token - started) * 1000)
        out["total"].append((conn.t_end - started) * 1000)
    if conn is not None and conn.transport is not None:
        conn.transport.close()


def build_request(url: str, model: str, headers: list[str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    body = orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": BODY_TEXT}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
        *headers,
    ]
    return parts.hostname or "127.0.0.1", parts.port or 80, ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def measure(
    url: str, model: str, headers: list[str], conns: int, seconds: float, timeout: float = 10.0
) -> dict:
    host, port, request = build_request(url, model, headers)
    out: dict = {"ttfb": [], "ttft": [], "total": [], "errors": 0, "non_200": 0}
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.wait_for(
        asyncio.gather(*(_worker(host, port, request, deadline, out, timeout) for _ in range(conns))),
        seconds + timeout + 5,
    )
    elapsed = time.perf_counter() - started
    result: dict = {
        "requests": len(out["ttft"]),
        "rps": len(out["ttft"]) / elapsed,
        "errors": out["errors"],
        "non_200": out["non_200"],
    }
    for key in ("ttfb", "ttft", "total"):
        values = sorted(out[key])
        result[f"{key}_p50_ms"] = percentile(values, 50)
        result[f"{key}_p99_ms"] = percentile(values, 99)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("model")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run
    result = run(measure(a.url, a.model, a.header, a.conns, a.seconds))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
