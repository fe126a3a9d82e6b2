"""The policy file: what a good one means, what each mistake says, and live reloading."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from integration_hub.policy import Limits, Policy, PolicyConfig, PolicyError, PolicySource, Target

GOOD = """
[defaults]
total_timeout = 90
connect_timeout = 2.5
first_byte_timeout = 20.0
max_attempts = 4
backoff_base = 0.1
backoff_max = 2.0
breaker_failures = 3
breaker_cooldown = 10.0
max_in_flight = 64
max_queued = 16

[tenants.acme]
requests_per_minute = 6000
tokens_per_minute = 2000000

[tenants.acme.credentials.azure-eastus]
requests_per_minute = 600
max_attempts = 2
connect_timeout = 1.0

[tenants.acme.routes.gpt4]
targets = [{credential = "azure-eastus", model = "gpt-4o"},
           {credential = "azure-westeurope", model = "gpt-4o"},
           {credential = "claude", model = "claude-sonnet-4-5"}]
max_attempts = 1
"""


def test_a_good_file_is_read_completely() -> None:
    config = PolicyConfig.parse(GOOD)
    assert config.defaults == Policy(
        total_timeout=90,
        connect_timeout=2.5,
        first_byte_timeout=20.0,
        max_attempts=4,
        backoff_base=0.1,
        backoff_max=2.0,
        breaker_failures=3,
        breaker_cooldown=10.0,
        max_in_flight=64,
        max_queued=16,
    )
    acme = config.tenant("acme")
    assert acme.limits == Limits(requests_per_minute=6000, tokens_per_minute=2_000_000)
    assert acme.credential_limits["azure-eastus"] == Limits(requests_per_minute=600)
    route = acme.routes["gpt4"]
    assert route.targets == (
        Target("azure-eastus", "gpt-4o"),
        Target("azure-westeurope", "gpt-4o"),
        Target("claude", "claude-sonnet-4-5"),
    )
    # A tenant the file does not name gets no limits and no routes.
    assert config.tenant("globex").limits == Limits()
    assert config.tenant("globex").routes == {}


def test_the_most_specific_setting_wins() -> None:
    config = PolicyConfig.parse(GOOD)
    route = config.tenant("acme").routes["gpt4"]
    plain = config.policy_for("acme", "azure-westeurope", None)
    assert (plain.max_attempts, plain.connect_timeout) == (4, 2.5)  # the defaults
    credential = config.policy_for("acme", "azure-eastus", None)
    assert (credential.max_attempts, credential.connect_timeout) == (2, 1.0)  # the credential's
    routed = config.policy_for("acme", "azure-eastus", route)
    assert (routed.max_attempts, routed.connect_timeout) == (1, 1.0)  # the route's, over the credential's
    assert config.policy_for("globex", "azure-eastus", None) == config.defaults  # per tenant


def test_max_queued_may_be_zero_never_wait_for_a_slot() -> None:
    assert PolicyConfig.parse("[defaults]\nmax_queued = 0\n").defaults.max_queued == 0


def test_an_empty_file_is_the_defaults() -> None:
    assert PolicyConfig.parse("") == PolicyConfig()
    assert PolicyConfig.parse("").defaults == Policy()


ROUTE = '[tenants.acme.routes.r]\ntargets = [{credential = "a", model = "m"}]\n'


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[defaults\n", "not valid TOML"),
        ("[other]\nx = 1\n", "'other'"),
        ("defaults = 5\n", "defaults: must be a table"),
        ("[defaults]\nmax_attempt = 3\n", "defaults.max_attempt: unknown setting"),
        ("[defaults]\nmax_attempts = 0\n", "defaults.max_attempts: must be a positive integer"),
        ("[defaults]\nmax_attempts = 1.5\n", "defaults.max_attempts: must be a positive integer"),
        ("[defaults]\nmax_in_flight = true\n", "defaults.max_in_flight: must be a positive integer"),
        ('[defaults]\ntotal_timeout = "10"\n', "defaults.total_timeout: must be a positive number"),
        ("[defaults]\nconnect_timeout = -1\n", "defaults.connect_timeout: must be a positive number"),
        ("[defaults]\nbreaker_cooldown = 0\n", "defaults.breaker_cooldown: must be a positive number"),
        ("[defaults]\nmax_queued = -1\n", "defaults.max_queued: must be a non-negative integer"),
        ("tenants = 5\n", "tenants: must be a table"),
        ("[tenants]\nacme = 5\n", "tenants.acme: must be a table"),
        ("[tenants.acme]\nrequests_per_minute = 0\n", "tenants.acme.requests_per_minute"),
        ("[tenants.acme]\ntokens_per_minute = 1.5\n", "tenants.acme.tokens_per_minute"),
        ("[tenants.acme]\nmax_attempts = 2\n", "tenants.acme: unknown keys ['max_attempts']"),
        ("[tenants.acme]\ncredentials = 5\n", "tenants.acme.credentials: must be a table"),
        ("[tenants.acme.credentials]\nmain = 5\n", "tenants.acme.credentials.main: must be a table"),
        (
            "[tenants.acme.credentials.main]\nrequests_per_minute = -1\n",
            "tenants.acme.credentials.main.requests_per_minute",
        ),
        ("[tenants.acme.credentials.main]\nretries = 2\n", "tenants.acme.credentials.main.retries"),
        ("[tenants.acme]\nroutes = 5\n", "tenants.acme.routes: must be a table"),
        ("[tenants.acme.routes.r]\nmax_attempts = 1\n", "tenants.acme.routes.r.targets"),
        ("[tenants.acme.routes.r]\ntargets = []\n", "tenants.acme.routes.r.targets"),
        ('[tenants.acme.routes.r]\ntargets = [{credential = "a"}]\n', "tenants.acme.routes.r.targets[0]"),
        ('[tenants.acme.routes.r]\ntargets = ["a/m"]\n', "tenants.acme.routes.r.targets[0]"),
        (
            '[tenants.acme.routes.r]\ntargets = [{credential = "a", model = "m", weight = 2}]\n',
            "tenants.acme.routes.r.targets[0]: unknown keys ['weight']",
        ),
        (ROUTE + "max_attempts = 0\n", "tenants.acme.routes.r.max_attempts"),
        (ROUTE + "fallback = true\n", "tenants.acme.routes.r.fallback"),
        (
            '[tenants.acme.routes."a/b"]\ntargets = [{credential = "a", model = "m"}]\n',
            "tenants.acme.routes.a/b: a route name must be non-empty and have no '/'",
        ),
    ],
)
def test_each_mistake_is_a_policy_error_naming_the_key(text: str, named: str) -> None:
    with pytest.raises(PolicyError) as caught:
        PolicyConfig.parse(text)
    assert named in str(caught.value)


# --- PolicySource: the file, re-read when it changes --------------------------------------------


def rewrite(path: Path, text: str) -> None:
    """Write and move the mtime on by a second, so the change is seen whatever the clock's grain."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    bumped = max(path.stat().st_mtime_ns, before + 1_000_000_000)
    os.utime(path, ns=(bumped, bumped))


def test_no_file_means_the_defaults() -> None:
    source = PolicySource(None)
    assert source.current() == PolicyConfig()


def test_a_bad_file_at_start_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[defaults]\nmax_attempts = 0\n")
    with pytest.raises(PolicyError, match=r"defaults\.max_attempts"):
        PolicySource(str(path))


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[defaults]\nmax_attempts = 2\n")
    source = PolicySource(str(path), check_interval=0)
    assert source.current().defaults.max_attempts == 2
    rewrite(path, "[defaults]\nmax_attempts = 5\n")  # the same size: the mtime tells
    assert source.current().defaults.max_attempts == 5
    assert source.last_error is None


def test_a_file_replaced_by_rename_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[defaults]\nmax_attempts = 2\n")
    source = PolicySource(str(path), check_interval=0)
    assert source.current().defaults.max_attempts == 2
    replacement = tmp_path / "policy.toml.new"
    replacement.write_text("[defaults]\nmax_attempts = 7\n")
    # Same size and, as an atomic save can leave it, the same mtime: only the inode differs.
    stat = path.stat()
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, path)
    assert source.current().defaults.max_attempts == 7


def test_a_broken_file_keeps_the_last_good_one_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(ROUTE)
    source = PolicySource(str(path), check_interval=0)
    good = source.current()
    with caplog.at_level(logging.ERROR, logger="integration_hub.policy"):
        rewrite(path, "[tenants.acme.routes.r]\ntargets = []\n")
        assert source.current() is good
        assert source.current() is good
    assert source.last_error is not None
    assert "tenants.acme.routes.r.targets" in source.last_error
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # said once, not on every check
    assert "keeping the last good one" in errors[0].getMessage()
    # A deleted file is kept the same way; a fixed one is read again.
    path.unlink()
    assert source.current() is good
    rewrite(path, "[defaults]\nmax_attempts = 9\n")
    assert source.current().defaults.max_attempts == 9
    assert source.last_error is None


def test_the_file_is_checked_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[defaults]\nmax_attempts = 2\n")
    source = PolicySource(str(path), check_interval=3600)  # read at start: next look in an hour
    rewrite(path, "[defaults]\nmax_attempts = 3\n")
    assert source.current().defaults.max_attempts == 2
