"""Policies and routes: operator configuration, one TOML file (HUB_POLICY_FILE).

    [defaults]                      # every call; each key optional
    total_timeout = 120.0           # seconds for the whole call (a request may ask for less, never more)
    connect_timeout = 5.0           # seconds to open a connection to the provider
    first_byte_timeout = 60.0       # seconds until the provider's first byte / first streamed event
    max_attempts = 3                # per target: 1 means no retries
    backoff_base = 0.2              # full-jitter exponential backoff: random(0, min(max, base * 2^n))
    backoff_max = 5.0
    breaker_failures = 5            # consecutive failures that open a (credential, model) circuit
    breaker_cooldown = 30.0         # seconds open before one trial call (half-open)
    max_in_flight = 512             # per credential per worker; beyond it, callers wait ...
    max_queued = 512                # ... up to this many (0: none), then RESOURCE_EXHAUSTED
    reserve_output_tokens = 1024    # budgets: output tokens reserved for a chat that sets no max

    [tenants.acme]                  # limits for a tenant, shared by all replicas (Redis)
    requests_per_minute = 6000
    tokens_per_minute = 2000000

    [tenants.acme.credentials.azure-eastus]   # per credential: limits and any [defaults] key
    requests_per_minute = 600
    max_attempts = 2

    [tenants.acme.routes.gpt4]      # a route: usable wherever a model is
    targets = [{credential = "azure-eastus", model = "gpt-4o"},
               {credential = "azure-westeurope", model = "gpt-4o"},
               {credential = "claude", model = "claude-sonnet-4-5"}]
    max_attempts = 2                # route-level overrides of [defaults]

    [tenants.acme.budget]           # spend caps, per UTC day / month: see policy/budget.py
    tokens_per_day = 2000000        # (also [tenants.acme.credentials.X.budget], .prices."model"
    money_per_month = 500.0         #  and [tenants.acme.tokens.<token id>.budget])

Why a file: routes and limits are reviewed, versioned operator decisions, like the
keyring; a file changes through the same deployment process and is read again
within a second of changing (a broken file keeps the last good one and says so).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integration_hub.policy.budget import (
    BudgetConfig,
    BudgetConfigError,
    Price,
    TenantBudgets,
    parse_budget,
    parse_prices,
    parse_tokens,
)

log = logging.getLogger("integration_hub.policy")


class PolicyError(ValueError):
    """The policy file is wrong; the message names the key."""


@dataclass(frozen=True, slots=True)
class Policy:
    total_timeout: float = 120.0
    connect_timeout: float = 5.0
    first_byte_timeout: float = 60.0
    max_attempts: int = 3
    backoff_base: float = 0.2
    backoff_max: float = 5.0
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    max_in_flight: int = 512
    max_queued: int = 512
    reserve_output_tokens: int = 1024


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class Target:
    credential: str
    model: str


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    targets: tuple[Target, ...]
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TenantConfig:
    limits: Limits = Limits()
    credential_limits: dict[str, Limits] = field(default_factory=dict)
    credential_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    budgets: TenantBudgets = field(default_factory=TenantBudgets)


_POLICY_KEYS = {f.name: f.type for f in dataclasses.fields(Policy)}
_LIMIT_KEYS = {"requests_per_minute", "tokens_per_minute"}
# Keys of a credential's table that are neither limits nor policy settings.
_CREDENTIAL_SPEND_KEYS = {"budget", "prices"}
# max_queued = 0 is a real choice: never wait for a slot, refuse at once when all are busy.
_ZERO_ALLOWED = {"max_queued"}


def _table(value: Any, where: str) -> dict[str, Any]:
    """A TOML table (or nothing), else a PolicyError naming where: `tenants = 5` is an
    operator's mistake to be told about, not an AttributeError at start."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: must be a table, not {type(value).__name__}")
    return value


def _check_policy_values(values: dict[str, Any], where: str) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _POLICY_KEYS:
            raise PolicyError(f"{where}.{key}: unknown setting; known: {sorted(_POLICY_KEYS)}")
        problem = _value_problem(key, value)
        if problem is not None:
            raise PolicyError(f"{where}.{key}: must be {problem}")
        checked[key] = value
    return checked


def _value_problem(key: str, value: Any) -> str | None:
    """What is wrong with `value` for the Policy field `key`, or None."""
    is_int = _POLICY_KEYS[key] == "int"
    kind = "integer" if is_int else "number"
    # bool is an int to Python, never a number to an operator.
    if isinstance(value, bool) or not isinstance(value, int if is_int else (int, float)):
        return f"a positive {kind}" if key not in _ZERO_ALLOWED else f"a non-negative {kind}"
    if key in _ZERO_ALLOWED:
        return None if value >= 0 else f"a non-negative {kind}"
    return None if value > 0 else f"a positive {kind}"


def _limits(values: dict[str, Any], where: str) -> Limits:
    for key in _LIMIT_KEYS & values.keys():
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise PolicyError(f"{where}.{key}: must be a positive integer")
    return Limits(values.get("requests_per_minute"), values.get("tokens_per_minute"))


def _route(name: str, values: dict[str, Any], where: str) -> Route:
    if "/" in name or not name:
        # On the OpenAI-compatible API a model with a slash names a credential, so a route
        # called "a/b" could never be reached there; a route must be usable wherever a model is.
        raise PolicyError(f"{where}: a route name must be non-empty and have no '/'")
    targets = values.get("targets")
    if not isinstance(targets, list) or not targets:
        raise PolicyError(f"{where}.targets: a non-empty list of {{credential, model}} is required")
    parsed = []
    for i, target in enumerate(targets):
        if not isinstance(target, dict) or not all(
            isinstance(target.get(k), str) and target[k] for k in ("credential", "model")
        ):
            raise PolicyError(f"{where}.targets[{i}]: needs credential and model (strings)")
        unknown = target.keys() - {"credential", "model"}
        if unknown:
            raise PolicyError(f"{where}.targets[{i}]: unknown keys {sorted(unknown)}")
        parsed.append(Target(target["credential"], target["model"]))
    overrides = _check_policy_values({k: v for k, v in values.items() if k != "targets"}, where)
    return Route(name, tuple(parsed), overrides)


def _tenant(name: str, values: Any) -> TenantConfig:
    where = f"tenants.{name}"
    values = _table(values, where)
    unknown = values.keys() - _LIMIT_KEYS - {"credentials", "routes", "budget", "tokens"}
    if unknown:
        raise PolicyError(f"{where}: unknown keys {sorted(unknown)}")
    credential_limits, credential_overrides = {}, {}
    credential_budgets: dict[str, BudgetConfig] = {}
    prices: dict[str, dict[str, Price]] = {}
    for credential, settings in _table(values.get("credentials"), f"{where}.credentials").items():
        at = f"{where}.credentials.{credential}"
        settings = _table(settings, at)
        credential_limits[credential] = _limits(settings, at)
        credential_overrides[credential] = _check_policy_values(
            {k: v for k, v in settings.items() if k not in _LIMIT_KEYS | _CREDENTIAL_SPEND_KEYS}, at
        )
        try:
            if "budget" in settings:
                credential_budgets[credential] = parse_budget(settings["budget"], f"{at}.budget")
            if "prices" in settings:
                prices[credential] = parse_prices(settings["prices"], f"{at}.prices")
        except BudgetConfigError as exc:
            raise PolicyError(str(exc)) from None
    routes = {
        route: _route(route, _table(settings, f"{where}.routes.{route}"), f"{where}.routes.{route}")
        for route, settings in _table(values.get("routes"), f"{where}.routes").items()
    }
    try:
        budgets = TenantBudgets(
            parse_budget(values["budget"], f"{where}.budget") if "budget" in values else None,
            credential_budgets,
            parse_tokens(values["tokens"], f"{where}.tokens") if "tokens" in values else {},
            prices,
        )
    except BudgetConfigError as exc:
        raise PolicyError(str(exc)) from None
    return TenantConfig(_limits(values, where), credential_limits, credential_overrides, routes, budgets)


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    defaults: Policy = Policy()
    tenants: dict[str, TenantConfig] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> PolicyConfig:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"not valid TOML: {exc}") from None
        unknown = data.keys() - {"defaults", "tenants"}
        if unknown:
            raise PolicyError(
                f"unknown top-level keys {sorted(unknown)}; expected [defaults] and [tenants.*]"
            )
        defaults = Policy(**_check_policy_values(_table(data.get("defaults"), "defaults"), "defaults"))
        tenants = {
            name: _tenant(name, values) for name, values in _table(data.get("tenants"), "tenants").items()
        }
        return cls(defaults, tenants)

    def tenant(self, tenant_id: str) -> TenantConfig:
        return self.tenants.get(tenant_id) or _NO_TENANT_CONFIG

    def policy_for(self, tenant_id: str, credential_name: str, route: Route | None) -> Policy:
        """Defaults, then the credential's settings, then the route's (most specific last)."""
        overrides = dict(self.tenant(tenant_id).credential_overrides.get(credential_name, {}))
        if route is not None:
            overrides.update(route.overrides)
        return dataclasses.replace(self.defaults, **overrides) if overrides else self.defaults


_NO_TENANT_CONFIG = TenantConfig()


class PolicySource:
    """The current PolicyConfig; re-reads HUB_POLICY_FILE when it changes (checked at most once a second)."""

    def __init__(self, path: str | None, check_interval: float = 1.0) -> None:
        self._path = Path(path) if path else None
        self._interval = check_interval
        self._config = PolicyConfig()
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self.last_error: str | None = None
        if self._path is not None:
            self._config = PolicyConfig.parse(self._path.read_text())  # a bad file at start is fatal
            self._stamp = self._file_stamp()
            self._checked = time.monotonic()  # just read: the next look is one interval away

    def _file_stamp(self) -> tuple[int, int, int] | None:
        assert self._path is not None
        try:
            stat = os.stat(self._path)
        except OSError:
            return None
        # The inode too: a file replaced by rename (a mounted ConfigMap's symlink swap, an
        # editor's atomic save) may keep its size and, on coarse clocks, its mtime.
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def current(self) -> PolicyConfig:
        if self._path is None:
            return self._config
        now = time.monotonic()
        if now - self._checked >= self._interval:
            self._checked = now
            stamp = self._file_stamp()
            if stamp != self._stamp:
                self._reload(stamp)
        return self._config

    def _reload(self, stamp: tuple[int, int, int] | None) -> None:
        assert self._path is not None
        try:
            self._config = PolicyConfig.parse(self._path.read_text())
            self._stamp, self.last_error = stamp, None
            log.info("policy file reloaded", extra={"path": str(self._path)})
        except (OSError, PolicyError) as exc:
            self._stamp = stamp
            self.last_error = str(exc)
            log.error("policy file %s is unusable, keeping the last good one: %s", self._path, exc)
