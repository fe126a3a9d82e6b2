"""Which providers exist, and the lazy way from a provider name to its implementation.

Each provider is the package `callers.<name>`: its `__init__` holds `SPEC` (pure data,
no SDK import), and each capability lives in its own module that exports `CALLER`,
an object implementing that capability's protocol. Nothing here imports a provider
package before it is asked for, so start-up never pays for (or requires) any SDK.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping

from callers.base import Capability, MissingExtra, NotSupported, SecretFields, Verifier, VerifyResult
from callers.spec import CredentialField, ProviderSpec

# Re-exported so that code listing providers needs only this module.
__all__ = [
    "CAPABILITY_MODULES",
    "IMPLEMENTATION_ATTRIBUTE",
    "PROVIDERS",
    "CredentialField",
    "ProviderSpec",
    "UnknownProvider",
    "capability",
    "sdk_installed",
    "spec",
    "specs",
    "verify",
]

PROVIDERS: tuple[str, ...] = (
    # LLM
    "openai",
    "azure_openai",
    "anthropic",
    "gemini",
    "vertex_ai",
    "bedrock",
    "cohere",
    "mistral",
    "huggingface",
    "replicate",
    "voyageai",
    "openrouter",
    "openai_compatible",
    "local",  # in-process models (sentence-transformers), no upstream
    # speech
    "google_speech",
    "azure_speech",
    "deepgram",
    "assemblyai",
    "cartesia",
    "sarvam",
    "elevenlabs",
    # telephony
    "twilio",
    "vonage",
    "exotel",
)

# The module inside a provider package that implements each capability. A streaming
# capability shares the module of its unary twin, so both use the same conversions.
CAPABILITY_MODULES: Mapping[Capability, str] = {
    Capability.VERIFY: "verify",
    Capability.CHAT: "chat",
    Capability.STREAM_CHAT: "chat",
    Capability.EMBED: "embed",
    Capability.RERANK: "rerank",
    Capability.STT: "transcribe",
    Capability.STREAM_STT: "transcribe",
    Capability.TTS: "synthesize",
    Capability.STREAM_TTS: "synthesize",
    Capability.STREAM_TTS_INPUT: "synthesize",
    Capability.VOICES: "voices",
    Capability.TELEPHONY: "telephony",
    Capability.CALL_EVENTS: "webhooks",
    Capability.CALL_MEDIA: "media",
}

# The attribute every capability module exports.
IMPLEMENTATION_ATTRIBUTE = "CALLER"

_PACKAGE = __name__.rpartition(".")[0]  # "callers"


class UnknownProvider(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown provider {name!r}; known providers: {', '.join(PROVIDERS)}")
        self.name = name


def spec(name: str) -> ProviderSpec:
    """The spec of provider `name`; imports only that provider's package."""
    # Checked against the fixed list before importing: the name comes from API
    # requests, and must never select an arbitrary module to import.
    if name not in PROVIDERS:
        raise UnknownProvider(name)
    package = importlib.import_module(f"{_PACKAGE}.{name}")
    provider_spec = getattr(package, "SPEC", None)
    if not isinstance(provider_spec, ProviderSpec) or provider_spec.name != name:
        raise TypeError(f"{_PACKAGE}.{name}.SPEC must be a ProviderSpec named {name!r}")
    return provider_spec


def specs() -> list[ProviderSpec]:
    return [spec(name) for name in PROVIDERS]


def sdk_installed(name: str) -> bool:
    """Whether the SDK of provider `name` is on the import path, without importing it.

    A provider whose implemented capabilities need no SDK has nothing to install. A
    present but broken SDK still surfaces as MissingExtra when first used.
    """
    return all(_findable(module) for module in spec(name).sdk_modules)


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken parent package, or a module without __spec__
        return False


def capability(name: str, cap: Capability) -> object:
    """The object implementing `cap` for provider `name`, importing its module now.

    Raises NotSupported when the provider's spec does not list the capability, and
    MissingExtra when the module's third-party SDK cannot be imported.
    """
    provider_spec = spec(name)
    if cap not in provider_spec.capabilities:
        raise NotSupported(name, cap.value)
    module_name = f"{_PACKAGE}.{name}.{CAPABILITY_MODULES[cap]}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        # A missing module of our own package is a bug to surface as it is; anything
        # else failing to import is the provider's SDK (absent, or too old to have
        # the name we import), which installing the provider's extra fixes.
        if exc.name is not None and (exc.name == _PACKAGE or exc.name.startswith(f"{_PACKAGE}.")):
            raise
        raise MissingExtra(provider_spec.extra, str(exc)) from exc
    implementation: object = getattr(module, IMPLEMENTATION_ATTRIBUTE, None)
    if implementation is None:
        raise TypeError(f"{module_name} lists no {IMPLEMENTATION_ATTRIBUTE}")
    return implementation


async def verify(
    name: str,
    secret: SecretFields,
    options: Mapping[str, str],
    *,
    timeout: float,
) -> VerifyResult:
    """Check a credential against its provider with one real authenticated call."""
    verifier = capability(name, Capability.VERIFY)
    if not isinstance(verifier, Verifier):
        raise TypeError(f"{_PACKAGE}.{name}.verify.{IMPLEMENTATION_ATTRIBUTE} is not a Verifier")
    return await verifier.verify(secret, options, timeout=timeout)
