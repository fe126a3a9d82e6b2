"""`integration-hub credentials ...`: a client of a running hub's gRPC API.

Secrets are best passed on stdin (`--secret-json -`), not in argv, where other
users of the machine can read them from the process list.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

from integration_hub.v1 import credentials_pb2 as pb
from integration_hub.v1 import credentials_pb2_grpc

EXIT_OK, EXIT_REJECTED, EXIT_ERROR, EXIT_INCONCLUSIVE = 0, 1, 2, 3


def add_credentials_parser(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "credentials", help="manage credentials through a running hub (needs HUB_TOKEN)"
    )
    parser.add_argument(
        "--target",
        default=os.environ.get("HUB_TARGET", "127.0.0.1:9004"),
        help="the hub's gRPC address (default: HUB_TARGET or 127.0.0.1:9004)",
    )
    parser.add_argument("--tls-ca", help="CA bundle to verify the hub's TLS certificate (enables TLS)")
    sub = parser.add_subparsers(dest="credentials_command", required=True)

    create = sub.add_parser("create")
    create.add_argument("--provider", required=True)
    create.add_argument("--name", required=True)
    _secret_arguments(create)
    sub.add_parser("list").add_argument("--provider", default="")
    verify = sub.add_parser("verify", help="exit 0 valid, 1 rejected, 3 inconclusive, 2 error")
    verify.add_argument("credential", nargs="?", help="id or name of a stored credential")
    verify.add_argument("--provider", default="", help="verify a secret that is not stored")
    verify.add_argument("--timeout", type=float, default=10.0)
    _secret_arguments(verify)
    delete = sub.add_parser("delete")
    delete.add_argument("credential")
    return parser


def _secret_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--secret-json", metavar="FILE", help="JSON object of secret fields; '-' for stdin")
    parser.add_argument("--secret", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE")


def _pairs(items: list[str], what: str) -> dict[str, str]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--{what} {item.split('=')[0]!r}: expected NAME=VALUE")
        result[key] = value
    return result


def _secret(args: argparse.Namespace) -> dict[str, str]:
    secret = _pairs(args.secret, "secret")
    if args.secret_json:
        text = sys.stdin.read() if args.secret_json == "-" else Path(args.secret_json).read_text()  # noqa: S105
        loaded = json.loads(text)
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise ValueError("--secret-json: expected a JSON object of string values")
        secret.update(loaded)
    return secret


def _stub(
    args: argparse.Namespace,
) -> tuple[credentials_pb2_grpc.CredentialServiceStub, list[tuple[str, str]]]:
    token = os.environ.get("HUB_TOKEN", "")
    if not token:
        raise ValueError("set HUB_TOKEN to a hub token (integration-hub tokens create ...)")
    if args.tls_ca:
        with open(args.tls_ca, "rb") as ca:
            channel = grpc.secure_channel(args.target, grpc.ssl_channel_credentials(ca.read()))
    else:
        channel = grpc.insecure_channel(args.target)
    return credentials_pb2_grpc.CredentialServiceStub(channel), [("authorization", f"Bearer {token}")]


def _print(message: Any) -> None:
    print(json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True), indent=2))


def _describe(error: grpc.RpcError) -> str:
    reason = ""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason = f" [{info.reason}]"
    return f"{error.code().name}{reason}: {error.details()}"


def run(args: argparse.Namespace) -> int:
    try:
        stub, metadata = _stub(args)
        return _COMMANDS[args.credentials_command](stub, metadata, args)
    except grpc.RpcError as exc:
        print(f"integration-hub: {_describe(exc)}", file=sys.stderr)
        return EXIT_ERROR


def _create(stub: Any, metadata: list[tuple[str, str]], args: argparse.Namespace) -> int:
    request = pb.CreateCredentialRequest(
        provider=args.provider, name=args.name, secret=_secret(args), options=_pairs(args.option, "option")
    )
    _print(stub.CreateCredential(request, metadata=metadata, timeout=30).credential)
    return EXIT_OK


def _list(stub: Any, metadata: list[tuple[str, str]], args: argparse.Namespace) -> int:
    token = ""
    while True:
        page = stub.ListCredentials(
            pb.ListCredentialsRequest(provider=args.provider, page_token=token), metadata=metadata, timeout=30
        )
        for c in page.credentials:
            print(f"{c.id}  {c.name}  {c.provider}  {c.hint}")
        token = page.next_page_token
        if not token:
            return EXIT_OK


def _verify(stub: Any, metadata: list[tuple[str, str]], args: argparse.Namespace) -> int:
    request = pb.VerifyCredentialRequest(
        id=args.credential or "",
        provider=args.provider,
        secret=_secret(args),
        options=_pairs(args.option, "option"),
    )
    request.timeout.FromMilliseconds(int(args.timeout * 1000))
    response = stub.VerifyCredential(request, metadata=metadata, timeout=args.timeout + 5)
    if response.valid:
        print(f"valid: {response.reason}")
        return EXIT_OK
    print(f"invalid: {response.reason}", file=sys.stderr)
    return EXIT_INCONCLUSIVE if response.outcome == pb.VERIFY_OUTCOME_INCONCLUSIVE else EXIT_REJECTED


def _delete(stub: Any, metadata: list[tuple[str, str]], args: argparse.Namespace) -> int:
    response = stub.DeleteCredential(
        pb.DeleteCredentialRequest(id=args.credential), metadata=metadata, timeout=30
    )
    print(f"deleted {response.id}")
    return EXIT_OK


_COMMANDS = {"create": _create, "list": _list, "verify": _verify, "delete": _delete}
