"""cmd/sbom.sh: a CycloneDX SBOM of what the image ships, valid against the CycloneDX schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from packaging.utils import canonicalize_name

from tests.test_lock import RUNTIME_LOCK, read_lock

ROOT = Path(__file__).resolve().parent.parent


def make_sbom(output: Path, lock: Path = RUNTIME_LOCK) -> str:
    env = {**os.environ, "CYCLONEDX_PY": str(Path(sys.executable).parent / "cyclonedx-py")}
    result = subprocess.run(
        ["bash", str(ROOT / "cmd" / "sbom.sh"), str(lock), str(output)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return output.read_text()


@pytest.fixture(scope="module")
def sbom(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_sbom(tmp_path_factory.mktemp("sbom") / "sbom.cdx.json")


def test_the_sbom_validates_against_the_cyclonedx_1_6_schema(sbom: str) -> None:
    # Checked here by cyclonedx-python-lib's own strict JSON-schema validator, independently of
    # the generator's --validate.
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom) is None


def test_the_validator_does_reject_a_broken_document(sbom: str) -> None:
    broken: dict[str, Any] = json.loads(sbom)
    broken["components"][0]["type"] = "not-a-component-type"
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(broken)) is not None


def test_the_sbom_describes_the_hub_and_every_locked_package_with_its_hashes(sbom: str) -> None:
    document = json.loads(sbom)
    assert document["bomFormat"] == "CycloneDX"
    assert document["specVersion"] == "1.6"
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    root = document["metadata"]["component"]
    assert (root["name"], root["version"], root["type"]) == (
        project["name"],
        project["version"],
        "application",
    )
    components: dict[str, Any] = {canonicalize_name(c["name"]): c for c in document["components"]}
    locked = read_lock(RUNTIME_LOCK)
    assert components.keys() == locked.keys()
    for name, pin in locked.items():
        component = components[name]
        assert component["version"] == pin.version
        purl = PackageURL.from_string(component["purl"])  # a version's "+" is %2B in a purl
        assert (purl.type, canonicalize_name(purl.name), purl.version) == ("pypi", name, pin.version)
        hashes = {h["content"] for ref in component["externalReferences"] for h in ref.get("hashes", [])}
        assert hashes == pin.hashes, name


def test_the_same_lock_gives_the_same_sbom(sbom: str, tmp_path: Path) -> None:
    assert make_sbom(tmp_path / "again.cdx.json") == sbom
