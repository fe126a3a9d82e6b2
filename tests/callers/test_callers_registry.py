"""The registry: provider catalogue, lazy imports, capability lookup and its errors."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from callers import registry
from callers.base import (
    CallEventHandler,
    CallMedia,
    Capability,
    ChatCaller,
    Embedder,
    MissingExtra,
    NotSupported,
    Reranker,
    StreamChatCaller,
    StreamSynthesizer,
    StreamTextSynthesizer,
    StreamTranscriber,
    Synthesizer,
    Telephony,
    Transcriber,
    Verifier,
    VoiceLister,
)
from callers.spec import ProviderSpec

ROOT = Path(__file__).resolve().parents[2]
CALLERS_DIR = ROOT / "callers"
VERIFIED_BY_OPENAI_SDK = ("openai", "azure_openai", "openrouter", "openai_compatible")


def run_python(code: str, *, pythonpath: list[Path]) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter, so sys.modules starts empty."""
    env = {"PYTHONPATH": ":".join(str(p) for p in pythonpath), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_provider_has_a_package_with_a_matching_spec() -> None:
    all_specs = registry.specs()
    assert [s.name for s in all_specs] == list(registry.PROVIDERS)
    assert len(set(registry.PROVIDERS)) == len(registry.PROVIDERS) == 24
    for provider_spec in all_specs:
        assert isinstance(provider_spec, ProviderSpec)
        assert provider_spec.extra == provider_spec.name
        assert provider_spec.display_name


def test_every_provider_folder_is_listed() -> None:
    # types/ and audio/ are shared by every caller, not providers.
    shared = {"types", "audio"}
    folders = {p.parent.name for p in CALLERS_DIR.glob("*/__init__.py")} - shared
    assert folders == set(registry.PROVIDERS)


# Which protocol each capability's CALLER must implement.
PROTOCOLS = {
    Capability.VERIFY: (Verifier,),
    Capability.CHAT: (ChatCaller,),
    Capability.STREAM_CHAT: (StreamChatCaller,),
    Capability.EMBED: (Embedder,),
    Capability.RERANK: (Reranker,),
    Capability.STT: (Transcriber,),
    Capability.STREAM_STT: (StreamTranscriber,),
    Capability.TTS: (Synthesizer,),
    Capability.STREAM_TTS: (StreamSynthesizer,),
    Capability.STREAM_TTS_INPUT: (StreamTextSynthesizer,),
    Capability.VOICES: (VoiceLister,),
    Capability.TELEPHONY: (Telephony,),
    Capability.CALL_EVENTS: (CallEventHandler,),
    Capability.CALL_MEDIA: (CallMedia,),
}


@pytest.mark.parametrize("name", registry.PROVIDERS)
def test_every_listed_capability_resolves_to_its_protocol(name: str) -> None:
    spec = registry.spec(name)
    assert Capability.VERIFY in spec.capabilities, f"{name}: every provider verifies"
    for capability in spec.capabilities:
        implementation = registry.capability(name, capability)
        for protocol in PROTOCOLS[capability]:
            assert isinstance(implementation, protocol), (name, capability, protocol)


@pytest.mark.parametrize("name", VERIFIED_BY_OPENAI_SDK)
def test_listed_capability_resolves_to_its_protocol(name: str) -> None:
    assert isinstance(registry.capability(name, Capability.VERIFY), Verifier)


def test_sdk_installed_finds_the_sdk_without_importing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VERIFIED_BY_OPENAI_SDK:
        assert registry.spec(name).sdk_modules == ("openai",)
        assert registry.sdk_installed(name) is True
    assert registry.sdk_installed("deepgram") is True  # deepgram-sdk is installed in the dev venv
    monkeypatch.setitem(sys.modules, "openai", None)  # how Python marks a module unimportable
    assert registry.sdk_installed("openai") is False


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(registry.UnknownProvider) as caught:
        registry.spec("os")  # must not be imported as callers.os, nor as anything else
    assert caught.value.name == "os"
    assert str(caught.value).startswith("unknown provider 'os'; known providers: openai, azure_openai, ")
    assert "exotel" in str(caught.value)


def test_capability_not_listed_is_not_supported() -> None:
    with pytest.raises(NotSupported) as caught:
        registry.capability("anthropic", Capability.STT)
    assert str(caught.value) == "provider 'anthropic' does not support capability 'stt'"
    assert (caught.value.provider, caught.value.capability) == ("anthropic", "stt")
    with pytest.raises(NotSupported, match="'exotel' does not support capability 'stt'"):
        registry.capability("exotel", Capability.STT)


def test_every_capability_has_a_module() -> None:
    assert set(registry.CAPABILITY_MODULES) == set(Capability)


def test_catalogue_imports_no_sdk() -> None:
    result = run_python(
        """
        import sys
        from callers import registry
        specs = registry.specs()
        for name in registry.PROVIDERS:
            registry.spec(name)
        loaded = sorted(m for m in ("openai", "httpx2", "aiohttp", "integration_hub") if m in sys.modules)
        print(len(specs), loaded)
        """,
        pythonpath=[ROOT],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "24 []"


def test_missing_sdk_becomes_missing_extra_naming_the_extra(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    (shadow / "openai").mkdir(parents=True)
    (shadow / "openai" / "__init__.py").write_text(
        'raise ImportError("simulated: openai is not installed")\n'
    )
    result = run_python(
        """
        from callers import registry
        from callers.base import Capability, MissingExtra
        for name in ("openai", "azure_openai", "openrouter", "openai_compatible"):
            registry.spec(name)  # the catalogue still works without the SDK
            try:
                registry.capability(name, Capability.VERIFY)
            except MissingExtra as exc:
                print(f"{name}|{exc.extra}|{exc}")
        """,
        pythonpath=[shadow, ROOT],
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split("|")[0] for line in lines] == list(VERIFIED_BY_OPENAI_SDK)
    for line in lines:
        name, extra, message = line.split("|")
        assert extra == name
        assert f"pip install 'integration-hub[{name}]'" in message
        assert "simulated: openai is not installed" in message


def test_missing_extra_message() -> None:
    error = MissingExtra("openrouter", "No module named 'openai'")
    assert str(error) == (
        "the SDK for provider 'openrouter' is not installed (No module named 'openai'); "
        "install it with: pip install 'integration-hub[openrouter]'"
    )


def test_callers_never_import_the_hub() -> None:
    offenders = []
    for path in CALLERS_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path}: {n}" for n in names if n.split(".")[0] == "integration_hub"]
    assert offenders == []
