"""The `integration-hub` command.

serve / migrate / keys / tokens work on this machine's store and keyring file
(they are operator commands). `credentials` is a client of a running hub's gRPC
API, authenticated with a hub token (HUB_TOKEN), like any internal service:
`integration-hub credentials verify NAME` exits 0 when the provider accepts the
credential, 1 when it rejects it, 3 when it cannot tell, 2 on any other error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from integration_hub.config import ConfigError, Settings
from integration_hub.logs import configure_logging

DEV_KEYRING = ".hub/keyring.json"
EXIT_OK, EXIT_REJECTED, EXIT_ERROR, EXIT_INCONCLUSIVE = 0, 1, 2, 3


class CliError(Exception):
    """A failure to report on stderr as one line, exiting 2."""


# --- store-side commands ---------------------------------------------------------


async def _with_store(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    from integration_hub.store import open_store

    store = open_store(settings.database_url)
    await store.connect()
    try:
        return await work(store)
    finally:
        await store.close()


async def _with_store_cache_audit(settings: Settings, work: Callable[[Any, Any, Any], Awaitable[int]]) -> int:
    from integration_hub.audit import AuditLog
    from integration_hub.cache import RowCache

    async def run(store: Any) -> int:
        cache = RowCache(redis_url=settings.redis_url)
        await cache.start(listen=False)  # so that its invalidations reach every replica
        audit = AuditLog(store)
        try:
            return await work(store, cache, audit)
        finally:
            await audit.flush()
            await cache.close()

    return await _with_store(settings, run)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def work(store: Any) -> int:
        applied = await store.migrate()
        print("applied: " + ", ".join(applied) if applied else "schema is up to date")
        return EXIT_OK

    return asyncio.run(_with_store(settings, work))


def keyring_path(args: argparse.Namespace, settings: Settings) -> str:
    path = getattr(args, "file", None) or settings.keyring_file
    if not path:
        raise CliError("no keyring file: pass --file PATH or set HUB_KEYRING_FILE")
    return str(path)


def cmd_keys_init(args: argparse.Namespace, settings: Settings) -> int:
    from integration_hub.key_admin import init_keyring

    path = keyring_path(args, settings)
    Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    keyring = init_keyring(path)
    print(f"created keyring {path} (mode 0600) with primary key k{keyring.primary_id}")
    print("back it up somewhere safe: without it, no stored credential can be opened")
    return EXIT_OK


def cmd_keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from integration_hub.key_admin import rotate_keyring

    async def work(store: Any, cache: Any, audit: Any) -> int:
        keyring = rotate_keyring(keyring_path(args, settings), audit)
        print(
            f"new primary key k{keyring.primary_id}; run `integration-hub keys rewrap` to move existing rows"
        )
        return EXIT_OK

    return asyncio.run(_with_store_cache_audit(settings, work))


def cmd_keys_rewrap(args: argparse.Namespace, settings: Settings) -> int:
    from integration_hub.key_admin import rewrap

    async def work(store: Any, cache: Any, audit: Any) -> int:
        report = await rewrap(keyring_path(args, settings), store, cache, audit, batch_size=args.batch_size)
        print(
            f"rewrapped {report.rewrapped} row(s) under k{report.primary}; "
            f"{report.changed_concurrently} changed concurrently (already under the primary)"
        )
        for credential_id, cause in sorted(report.failed.items()):
            print(f"FAILED {credential_id}: {cause}", file=sys.stderr)
        return EXIT_OK if report.ok else EXIT_ERROR

    return asyncio.run(_with_store_cache_audit(settings, work))


def cmd_keys_retire(args: argparse.Namespace, settings: Settings) -> int:
    from integration_hub.key_admin import retire_key
    from integration_hub.vault import parse_key_id

    async def work(store: Any, cache: Any, audit: Any) -> int:
        key_id = parse_key_id(args.key_id)
        await retire_key(keyring_path(args, settings), key_id, store, audit)
        print(f"retired k{key_id}: its material is deleted from the keyring")
        return EXIT_OK

    return asyncio.run(_with_store_cache_audit(settings, work))


def cmd_keys_status(args: argparse.Namespace, settings: Settings) -> int:
    from integration_hub.key_admin import key_status

    async def work(store: Any) -> int:
        statuses = await key_status(keyring_path(args, settings), store)
        if args.json:
            print(json.dumps([asdict(s) for s in statuses], indent=2))
        else:
            print(f"{'key':<6}{'state':<10}{'rows':>8}{'encryptions':>14}  created")
            for s in statuses:
                print(f"{s.id:<6}{s.state:<10}{s.rows:>8}{s.encryptions:>14}  {s.created_at}")
        for s in statuses:
            if s.warning:
                print(f"WARNING {s.id}: {s.warning}", file=sys.stderr)
        return EXIT_OK

    return asyncio.run(_with_store(settings, work))


def cmd_tokens_create(args: argparse.Namespace, settings: Settings) -> int:
    from integration_hub.auth import mint_token

    async def work(store: Any) -> int:
        expires = datetime.now(UTC) + timedelta(days=args.expires_in_days) if args.expires_in_days else None
        row, token = await mint_token(
            store, tenant_id=args.tenant, scopes=args.scope, name=args.name or "", expires_at=expires
        )
        print(
            f"token {row.id} for tenant {row.tenant_id}, scopes {','.join(row.scopes)}"
            + (f", expires {expires.isoformat()}" if expires else ""),
            file=sys.stderr,
        )
        print("shown once; store it now:", file=sys.stderr)
        print(token)  # the last line on stdout, alone, for scripts
        return EXIT_OK

    return asyncio.run(_with_store(settings, work))


def cmd_tokens_list(args: argparse.Namespace, settings: Settings) -> int:
    async def work(store: Any) -> int:
        for row in await store.list_tokens(args.tenant):
            state = "revoked" if row.revoked_at else "active"
            print(
                f"{row.id}  tenant={row.tenant_id}  scopes={','.join(row.scopes)}  {state}  name={row.name}"
            )
        return EXIT_OK

    return asyncio.run(_with_store(settings, work))


def cmd_tokens_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from integration_hub.auth import revoke_token

    async def work(store: Any, cache: Any, audit: Any) -> int:
        row = await revoke_token(store, cache, args.token_id)
        if row is None:
            raise CliError(f"no token {args.token_id}")
        audit.record("token.revoke", "ok", tenant_id=row.tenant_id, actor="cli", detail={"token": row.id})
        print(f"revoked {row.id}")
        return EXIT_OK

    return asyncio.run(_with_store_cache_audit(settings, work))


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from integration_hub.workers import default_worker_count

    if args.dev_keyring and not settings.keyring_file:
        if not Path(DEV_KEYRING).exists():
            cmd_keys_init(argparse.Namespace(file=DEV_KEYRING), settings)
            print(f"DEVELOPMENT keyring created at {DEV_KEYRING}; not for production", file=sys.stderr)
        settings = replace(settings, keyring_file=DEV_KEYRING)
    workers = args.workers or settings.workers or default_worker_count()
    if workers == 1:
        return _serve_in_this_process(settings, migrate=args.migrate)
    return _serve_with_supervisor(settings, workers=workers, migrate=args.migrate)


def _serve_in_this_process(settings: Settings, *, migrate: bool) -> int:
    from integration_hub.hub import StartupError
    from integration_hub.serve import run

    try:
        return run(settings, migrate=migrate)
    except StartupError as exc:
        raise CliError(f"cannot start: {exc}") from None


def _serve_with_supervisor(settings: Settings, *, workers: int, migrate: bool) -> int:
    # Imports neither grpc nor the servers: the supervisor only starts and watches processes.
    from integration_hub.workers import SupervisorError, supervise

    try:
        return supervise(settings, workers=workers, migrate=migrate)
    except SupervisorError as exc:
        raise CliError(str(exc)) from None


def _worker_count(raw: str) -> int:
    try:
        count = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if count < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return count


# --- API-client commands -----------------------------------------------------------


def cmd_credentials(args: argparse.Namespace, settings: Settings) -> int:
    from integration_hub import client_commands

    return client_commands.run(args)


# --- argument parsing -------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="integration-hub", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gRPC and HTTP servers")
    serve.add_argument("--migrate", action="store_true", help="apply pending migrations first")
    serve.add_argument(
        "--dev-keyring",
        action="store_true",
        help=f"with HUB_KEYRING_FILE unset, use (creating if missing) {DEV_KEYRING}",
    )
    serve.add_argument(
        "--workers",
        type=_worker_count,
        metavar="N",
        help="server processes sharing the ports (default: HUB_WORKERS, else one per core); "
        "1 serves in this process, without a supervisor",
    )
    serve.set_defaults(func=cmd_serve)

    commands.add_parser("migrate", help="apply pending database migrations").set_defaults(func=cmd_migrate)

    keys = commands.add_parser("keys", help="the keyring: init, rotate, rewrap, retire, status")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    for name, func, text in [
        ("init", cmd_keys_init, "create a new keyring file"),
        ("rotate", cmd_keys_rotate, "add a new primary key"),
        ("rewrap", cmd_keys_rewrap, "re-seal every row under the primary key"),
        ("retire", cmd_keys_retire, "delete a key no row uses any more"),
        ("status", cmd_keys_status, "keys, rows and encryptions per key"),
    ]:
        sub = key_commands.add_parser(name, help=text)
        sub.add_argument("--file", help="keyring file (default: HUB_KEYRING_FILE)")
        sub.set_defaults(func=func)
        if name == "rewrap":
            sub.add_argument("--batch-size", type=int, default=100)
        if name == "retire":
            sub.add_argument("key_id", help="e.g. k1")
        if name == "status":
            sub.add_argument("--json", action="store_true")

    tokens = commands.add_parser("tokens", help="hub tokens: create, list, revoke")
    token_commands = tokens.add_subparsers(dest="tokens_command", required=True)
    create = token_commands.add_parser("create", help="mint a token (printed once, as the last line)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scope", action="append", required=True, choices=["admin", "invoke"])
    create.add_argument("--name")
    create.add_argument("--expires-in-days", type=float)
    create.set_defaults(func=cmd_tokens_create)
    listing = token_commands.add_parser("list")
    listing.add_argument("--tenant")
    listing.set_defaults(func=cmd_tokens_list)
    revoke = token_commands.add_parser("revoke")
    revoke.add_argument("token_id")
    revoke.set_defaults(func=cmd_tokens_revoke)

    from integration_hub.client_commands import add_credentials_parser

    add_credentials_parser(commands).set_defaults(func=cmd_credentials)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"integration-hub: configuration: {exc}", file=sys.stderr)
        return EXIT_ERROR
    configure_logging(
        settings.log_level if args.command == "serve" else os.environ.get("HUB_LOG_LEVEL", "WARNING")
    )
    from integration_hub.store.base import StoreError
    from integration_hub.vault import KeyringError

    try:
        result: int = args.func(args, settings)
        return result
    except (CliError, KeyringError, StoreError, ValueError) as exc:
        print(f"integration-hub: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
