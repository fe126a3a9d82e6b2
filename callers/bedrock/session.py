"""botocore clients fed only from the vault's secret and the credential's options.

A stock botocore (or boto3) session looks things up on its own: credentials and
region from AWS_* environment variables, ~/.aws/config and ~/.aws/credentials,
container and instance metadata (IMDS); endpoints from AWS_ENDPOINT_URL*; retry
settings from AWS_MAX_ATTEMPTS; even the auth scheme, which an AWS_BEARER_TOKEN_BEDROCK
in the environment switches from SigV4 to a bearer token. None of that may reach a
call made with a tenant's key, so the one session this module builds replaces the
components those lookups live in:

- `config_store`: every configuration variable is a constant (botocore's documented
  default), so no environment variable and no config file is ever read; the config
  and credentials file paths are None, which botocore's loader treats as "no file";
- `credential_provider` and `token_provider`: empty chains, so nothing is resolved
  from the environment, files, SSO caches or IMDS (every client is also given its
  keys explicitly, which bypasses the chains in the first place);
- `data_loader`: only botocore's bundled models, not ~/.aws/models.

botocore also imports "experimental client plugins" named by the
BOTOCORE_EXPERIMENTAL__PLUGINS environment variable into every client it creates;
clients are created inside botocore's (private) plugin context set to DISABLED,
its only off switch.

Each client also pins SigV4 (`signature_version`), turns retries off
(`total_max_attempts=1`: the hub owns retries) and ignores configured endpoints.

Credentials live inside a client, so clients are never pooled: each call builds its
own (about a millisecond once the session has loaded the service model) and drops it
when the call ends. The session is shared because it holds no credentials, only the
loaded models; creating clients from it is serialised with a lock, as botocore
sessions are not thread-safe.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.configprovider import (
    BOTOCORE_DEFAUT_SESSION_VARIABLES,
    ConfigValueStore,
    ConstantProvider,
)
from botocore.credentials import CredentialResolver
from botocore.loaders import Loader
from botocore.tokens import TokenProviderChain

from callers.base import SecretFields
from callers.spec import InvalidCredentialField

RUNTIME_SERVICE = "bedrock-runtime"
CONTROL_SERVICE = "bedrock"

# Values that differ from botocore's defaults; every other variable keeps its default.
_PINNED_CONFIG: Mapping[str, Any] = {
    "profile": None,
    "region": None,  # always passed per client
    "config_file": None,
    "credentials_file": None,
    "data_path": None,
    "ca_bundle": None,
    "ignore_configured_endpoint_urls": True,
    "max_attempts": 1,
}

try:  # botocore >= 1.37; older versions load no plugins at all
    from botocore.plugin import PluginContext, reset_plugin_context, set_plugin_context
except ImportError:  # pragma: no cover - depends on the installed botocore
    PluginContext = None

_lock = threading.Lock()
_session: botocore.session.Session | None = None


def _build_isolated_session() -> botocore.session.Session:
    session = botocore.session.Session()
    constants = {name: spec[2] for name, spec in BOTOCORE_DEFAUT_SESSION_VARIABLES.items()}
    constants.update(_PINNED_CONFIG)
    store = ConfigValueStore(mapping={name: ConstantProvider(value) for name, value in constants.items()})
    session.register_component("config_store", store)
    session.register_component("credential_provider", CredentialResolver(providers=[]))
    session.register_component("token_provider", TokenProviderChain(providers=[]))
    bundled_only = Loader(extra_search_paths=[Loader.BUILTIN_DATA_PATH], include_default_search_paths=False)
    session.register_component("data_loader", bundled_only)
    return session


@dataclass(frozen=True, slots=True)
class AwsKeys:
    """One call's key pair, read from the secret on the event loop before the call starts."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_secret(cls, secret: SecretFields) -> AwsKeys:
        return cls(
            access_key_id=secret.reveal("access_key_id"),
            secret_access_key=secret.reveal("secret_access_key"),
            session_token=secret.get("session_token") or None,
        )


@contextlib.contextmanager
def _environment_plugins_disabled() -> Iterator[None]:
    if PluginContext is None:  # pragma: no cover
        yield
        return
    token = set_plugin_context(PluginContext(plugins="DISABLED"))
    try:
        yield
    finally:
        reset_plugin_context(token)


def client_config(
    *, region: str, timeout: float, connect_timeout: float | None = None, max_connections: int = 10
) -> Config:
    return Config(
        region_name=region,
        # Pinned in code: botocore would otherwise prefer a bearer token found in the
        # process environment (AWS_BEARER_TOKEN_BEDROCK) over the keys we pass.
        signature_version="v4",
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=timeout if connect_timeout is None else connect_timeout,
        read_timeout=timeout,
        max_pool_connections=max_connections,
        ignore_configured_endpoint_urls=True,
        parameter_validation=True,
    )


def region_of(options: Mapping[str, str]) -> str:
    region = options.get("region")
    if not region:  # only when the hub skipped validation: region has no default
        raise InvalidCredentialField("options.region", "required")
    return region


def new_client(
    service: str,
    keys: AwsKeys,
    *,
    region: str,
    endpoint_url: str | None,
    timeout: float,
    connect_timeout: float | None = None,
    max_connections: int = 10,
) -> Any:
    """A client for one call; blocking (it may load the service model): call it in a thread."""
    global _session
    config = client_config(
        region=region, timeout=timeout, connect_timeout=connect_timeout, max_connections=max_connections
    )
    with _lock, _environment_plugins_disabled():
        if _session is None:
            _session = _build_isolated_session()
        return _session.create_client(
            service,
            region_name=region,
            endpoint_url=endpoint_url,
            # Explicit even though our own transport does the TLS: with None, botocore
            # would read REQUESTS_CA_BUNDLE from the environment.
            verify=True,
            aws_access_key_id=keys.access_key_id,
            aws_secret_access_key=keys.secret_access_key,
            aws_session_token=keys.session_token,
            config=config,
        )
