"""The gRPC request body h2load sends, and a real-client check that it is answered OK.

    python bench/grpc_body.py write FILE [--credential main] [--model gpt-4o-mini]
    python bench/grpc_body.py check TARGET TOKEN [--credential main]

`write` builds integration_hub.v1.ChatRequest with the generated chat_pb2 and frames it
as one gRPC message (1 byte compressed flag = 0, 4 bytes big-endian length, message).
`check` sends the same request with grpcio and demands grpc-status 0 and the fake
upstream's answer text: h2load itself only sees HTTP status 200, which a failed gRPC
call also has (the gRPC status is in the trailers).
"""

# A benchmark tool: runs fixed local programs (wrk, h2load, py-spy, integration-hub) and
# opens only loopback http:// URLs it builds itself.

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from integration_hub.v1 import chat_pb2

EXPECTED_TEXT = "Hello! How can I help you today?"
CHAT_PATH = "/integration_hub.v1.ChatService/Chat"


def chat_request(credential: str = "main", model: str = "gpt-4o-mini") -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(
        credential=credential,
        model=model,
        messages=[
            chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=[chat_pb2.ContentPart(text="Say hello.")])
        ],
    )


def framed(message: chat_pb2.ChatRequest) -> bytes:
    payload = message.SerializeToString()
    return struct.pack(">BI", 0, len(payload)) + payload


def parse_framed_response(data: bytes) -> chat_pb2.ChatResponse:
    flag, length = struct.unpack(">BI", data[:5])
    if flag != 0:
        raise ValueError("compressed gRPC message")
    return chat_pb2.ChatResponse.FromString(data[5 : 5 + length])


def check(target: str, token: str, credential: str = "main", n: int = 3) -> str:
    """n unary calls through grpcio; returns a one-line description, raises on any failure."""
    import grpc

    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            CHAT_PATH,
            request_serializer=chat_pb2.ChatRequest.SerializeToString,
            response_deserializer=chat_pb2.ChatResponse.FromString,
        )
        for _ in range(n):
            response, rpc = call.with_call(
                chat_request(credential), metadata=[("authorization", f"Bearer {token}")], timeout=10
            )
            if rpc.code() != grpc.StatusCode.OK:
                raise RuntimeError(f"gRPC Chat answered {rpc.code()}")
            text = "".join(part.text for part in response.message.content)
            if text != EXPECTED_TEXT:
                raise RuntimeError(f"gRPC Chat answered unexpected text {text!r}")
    finish = chat_pb2.FinishReason.Name(response.finish_reason)
    return f"gRPC Chat x{n}: status OK, text {EXPECTED_TEXT!r}, finish {finish}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("file")
    w.add_argument("--credential", default="main")
    w.add_argument("--model", default="gpt-4o-mini")
    c = sub.add_parser("check")
    c.add_argument("target")
    c.add_argument("token")
    c.add_argument("--credential", default="main")
    a = ap.parse_args()
    if a.cmd == "write":
        Path(a.file).write_bytes(framed(chat_request(a.credential, a.model)))
        print(f"wrote {a.file}")
    else:
        print(check(a.target, a.token, a.credential))
    return 0


if __name__ == "__main__":
    sys.exit(main())
