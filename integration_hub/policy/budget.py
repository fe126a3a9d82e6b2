"""Budgets: caps on spend per tenant, per credential and per hub token, per UTC calendar
day or month, in tokens and (where the credential has prices) in money.

    [tenants.acme.budget]                       # the whole tenant
    tokens_per_day = 2_000_000
    money_per_month = 500.0                     # in the prices' unit (say dollars)
    warn_at = 0.8                               # log + metric when 80 % is spent (default 0.8)

    [tenants.acme.credentials.main.budget]      # one credential of the tenant
    money_per_day = 25.0

    [tenants.acme.credentials.main.prices."gpt-4o"]   # money per unit of use, per model
    input_per_million = 2.50                    # input tokens (uncached)
    cached_per_million = 1.25                   # cached input tokens (default: the input price)
    output_per_million = 10.00
    audio_per_second = 0.0001                   # seconds of audio (transcription, synthesis)
    characters_per_million = 15.0               # characters synthesized

    [tenants.acme.tokens.9f2c...e1.budget]      # one hub token (its id, as `tokens list` shows)
    tokens_per_day = 100_000

Money has no currency: it is whatever unit the prices are written in. Internally it is
an integer count of millionths of that unit ("micro"), computed from the prices with
exact decimals and rounded up once per call, so that sums over millions of calls do not
drift the way floats would. A model without a price costs nothing in money (it still
counts against token budgets).

Periods are UTC calendar days and months: a day budget starts again at 00:00 UTC, a
month budget on the 1st at 00:00 UTC. A call counts in the period it started in.

This module is the configuration and the arithmetic; budget_ledger.py holds the
counters (Redis, or this process) and engine.py reserves and settles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

Period = Literal["day", "month"]
Unit = Literal["tokens", "money"]
Scope = Literal["tenant", "credential", "token"]
MICRO = 1_000_000
DEFAULT_WARN_AT = 0.8

_LIMIT_KEYS: dict[str, tuple[Unit, Period]] = {
    "tokens_per_day": ("tokens", "day"),
    "tokens_per_month": ("tokens", "month"),
    "money_per_day": ("money", "day"),
    "money_per_month": ("money", "month"),
}
_PRICE_KEYS = (
    "input_per_million",
    "cached_per_million",
    "output_per_million",
    "audio_per_second",
    "characters_per_million",
)


class BudgetConfigError(ValueError):
    """A budget or price setting is wrong; the message names the key (a PolicyError to the file)."""


@dataclass(frozen=True, slots=True)
class BudgetLimit:
    unit: Unit
    period: Period
    limit: int  # tokens, or micro-units of money


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    limits: tuple[BudgetLimit, ...] = ()
    warn_at: float = DEFAULT_WARN_AT


@dataclass(frozen=True, slots=True)
class Price:
    """Money per unit of use, in the prices' unit; cached None: cached input costs as input."""

    input_per_million: Decimal = Decimal(0)
    cached_per_million: Decimal | None = None
    output_per_million: Decimal = Decimal(0)
    audio_per_second: Decimal = Decimal(0)
    characters_per_million: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Amounts:
    """What a call uses (or, reserved before it, may use at most)."""

    input_tokens: int = 0  # including cached_tokens
    output_tokens: int = 0
    cached_tokens: int = 0
    audio_seconds: float = 0.0
    characters: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


NOTHING = Amounts()


def _number(value: Any, where: str) -> Decimal:
    # bool is an int to Python, never an amount to an operator.
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or not math.isfinite(value):
        raise BudgetConfigError(f"{where}: must be a non-negative number")
    # Through str: the decimal the operator wrote (2.5), not the float's binary expansion.
    return Decimal(str(value))


def parse_budget(values: Any, where: str) -> BudgetConfig:
    if not isinstance(values, dict):
        raise BudgetConfigError(f"{where}: must be a table")
    unknown = values.keys() - _LIMIT_KEYS.keys() - {"warn_at"}
    if unknown:
        raise BudgetConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_LIMIT_KEYS)}")
    limits = []
    for key, (unit, period) in _LIMIT_KEYS.items():
        if key not in values:
            continue
        amount = _number(values[key], f"{where}.{key}")
        if amount <= 0:
            raise BudgetConfigError(f"{where}.{key}: must be more than 0")
        if unit == "tokens":
            if not isinstance(values[key], int):
                raise BudgetConfigError(f"{where}.{key}: must be a whole number of tokens")
            limits.append(BudgetLimit(unit, period, int(amount)))
        else:
            limits.append(BudgetLimit(unit, period, int(amount * MICRO)))
    warn_at = values.get("warn_at", DEFAULT_WARN_AT)
    if isinstance(warn_at, bool) or not isinstance(warn_at, int | float) or not 0 < warn_at <= 1:
        raise BudgetConfigError(f"{where}.warn_at: must be a fraction more than 0 and at most 1")
    if not limits:
        raise BudgetConfigError(f"{where}: names no limit; set one of {sorted(_LIMIT_KEYS)}")
    return BudgetConfig(tuple(limits), float(warn_at))


def parse_prices(values: Any, where: str) -> dict[str, Price]:
    if not isinstance(values, dict):
        raise BudgetConfigError(f"{where}: must be a table of models")
    prices = {}
    for model, price in values.items():
        at = f"{where}.{model}"
        if not isinstance(price, dict):
            raise BudgetConfigError(f"{at}: must be a table of prices")
        unknown = price.keys() - set(_PRICE_KEYS)
        if unknown:
            raise BudgetConfigError(f"{at}: unknown keys {sorted(unknown)}; known: {list(_PRICE_KEYS)}")
        parsed = {key: _number(price[key], f"{at}.{key}") for key in _PRICE_KEYS if key in price}
        prices[model] = Price(**parsed)
    return prices


def cost_micro(amounts: Amounts, price: Price | None) -> int:
    """The money a call's use costs, in micro-units, rounded up (a call never costs less
    than it did); 0 without a price."""
    if price is None:
        return 0
    cached = min(amounts.cached_tokens, amounts.input_tokens)
    cached_price = price.input_per_million if price.cached_per_million is None else price.cached_per_million
    # A price per million tokens in units is, per token, the same number in micro-units.
    micro = (
        (amounts.input_tokens - cached) * price.input_per_million
        + cached * cached_price
        + amounts.output_tokens * price.output_per_million
        + amounts.characters * price.characters_per_million
        + Decimal(str(amounts.audio_seconds)) * price.audio_per_second * MICRO
    )
    return math.ceil(micro)


def amount_in(unit: Unit, amounts: Amounts, price: Price | None) -> int:
    return amounts.tokens if unit == "tokens" else cost_micro(amounts, price)


def period_bounds(period: Period, now: float) -> tuple[str, float]:
    """The UTC period `now` falls in: its label (2026-12-04, 2026-12) and when it ends."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        label = start.strftime("%Y-%m-%d")
        end = start.timestamp() + 86_400
    else:
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        label = start.strftime("%Y-%m")
        following = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        end = following.timestamp()
    return label, end


@dataclass(frozen=True, slots=True)
class TenantBudgets:
    """A tenant's budgets and prices, as the policy file gives them."""

    tenant: BudgetConfig | None = None
    credentials: dict[str, BudgetConfig] = field(default_factory=dict)
    tokens: dict[str, BudgetConfig] = field(default_factory=dict)
    # credential name -> model -> price
    prices: dict[str, dict[str, Price]] = field(default_factory=dict)

    def price(self, credential: str, model: str) -> Price | None:
        return self.prices.get(credential, {}).get(model)

    @property
    def any(self) -> bool:
        return self.tenant is not None or bool(self.credentials) or bool(self.tokens)


def parse_tokens(values: Any, where: str) -> dict[str, BudgetConfig]:
    """[tenants.<t>.tokens.<token id>] tables: each holds one `budget`."""
    if not isinstance(values, dict):
        raise BudgetConfigError(f"{where}: must be a table of token ids")
    budgets = {}
    for token_id, settings in values.items():
        at = f"{where}.{token_id}"
        if not isinstance(settings, dict) or settings.keys() - {"budget"}:
            raise BudgetConfigError(f"{at}: only a [budget] table may be set for a token")
        if "budget" in settings:
            budgets[token_id] = parse_budget(settings["budget"], f"{at}.budget")
    return budgets
