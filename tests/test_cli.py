"""The `integration-hub` command as operators and scripts use it."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

from tests.fakes.openai_server import FakeOpenAI
from tests.harness import hub_process, run_cli, settings_for

KEY = "sk-test-CliVerify0123456789ab"


def test_keys_init_creates_a_private_keyring_and_never_overwrites(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, database_url=None)
    path = tmp_path / "new" / "keyring.json"
    first = run_cli(settings, "keys", "init", "--file", str(path))
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = run_cli(settings, "keys", "init", "--file", str(path))
    assert again.returncode == 2
    assert "refusing to overwrite" in again.stderr


def test_tokens_create_list_revoke(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, database_url=None)
    assert run_cli(settings, "migrate").returncode == 0
    created = run_cli(settings, "tokens", "create", "--tenant", "acme", "--scope", "admin", "--name", "ci")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("ihub_")
    listing = run_cli(settings, "tokens", "list", "--tenant", "acme").stdout
    assert "name=ci" in listing
    assert token not in listing
    token_id = listing.split()[0]
    assert run_cli(settings, "tokens", "revoke", token_id).returncode == 0
    assert "revoked" in run_cli(settings, "tokens", "list").stdout
    bad = run_cli(settings, "tokens", "create", "--tenant", "bad tenant!", "--scope", "admin")
    assert bad.returncode == 2
    assert "tenant" in bad.stderr


def test_retire_refuses_while_rows_use_the_key(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, database_url=None)
    with hub_process(settings, tmp_path / "hub.log") as hub:
        token = run_cli(settings, "tokens", "create", "--tenant", "acme", "--scope", "admin").stdout.split()[
            -1
        ]
        created = run_cli(
            settings,
            "credentials",
            "--target",
            hub.grpc_target,
            "create",
            "--provider",
            "openai",
            "--name",
            "main",
            "--secret-json",
            "-",
            stdin=json.dumps({"api_key": KEY}),
            HUB_TOKEN=token,
        )
        assert created.returncode == 0, created.stderr
        assert KEY not in created.stdout
        assert run_cli(settings, "keys", "rotate").returncode == 0
        refused = run_cli(settings, "keys", "retire", "k1")
        assert refused.returncode == 2
        assert "1 credential(s) are still sealed under k1" in refused.stderr
        primary = run_cli(settings, "keys", "retire", "k2")
        assert primary.returncode == 2
        assert hub.terminate() == 0


async def test_credentials_verify_exit_codes(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, database_url=None)
    async with FakeOpenAI(valid_keys={KEY}) as fake:
        with hub_process(settings, tmp_path / "hub.log") as hub:
            token = run_cli(
                settings, "tokens", "create", "--tenant", "acme", "--scope", "admin"
            ).stdout.split()[-1]

            def cli(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
                done = run_cli(
                    settings, "credentials", "--target", hub.grpc_target, *args, stdin=stdin, HUB_TOKEN=token
                )
                return done.returncode, done.stdout, done.stderr

            for name, key in (("good", KEY), ("bad", "sk-test-Rejected000000000000")):
                code, _, err = await asyncio.to_thread(
                    cli,
                    "create",
                    "--provider",
                    "openai",
                    "--name",
                    name,
                    "--option",
                    f"base_url={fake.base_url}",
                    "--secret-json",
                    "-",
                    stdin=json.dumps({"api_key": key}),
                )
                assert code == 0, err
            assert (await asyncio.to_thread(cli, "verify", "good"))[0] == 0
            code, _, err = await asyncio.to_thread(cli, "verify", "bad")
            assert code == 1
            assert "401" in err
            code, _, err = await asyncio.to_thread(cli, "verify", "missing")
            assert code == 2
            assert "CREDENTIAL_NOT_FOUND" in err
            code, out, _ = await asyncio.to_thread(cli, "list")
            assert code == 0
            assert "good" in out
            assert "bad" in out
            assert (await asyncio.to_thread(cli, "delete", "bad"))[0] == 0
            assert hub.terminate() == 0
