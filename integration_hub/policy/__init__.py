"""Timeouts, retries, routes, circuit breakers, rate limits and concurrency bounds:
the one wrapper around every provider call (engine.py), configured by config.py."""

from integration_hub.policy.config import (
    Limits,
    Policy,
    PolicyConfig,
    PolicyError,
    PolicySource,
    Route,
    Target,
)
from integration_hub.policy.engine import Plan, PolicyEngine, PolicyEvents, TargetUnusable
from integration_hub.policy.ratelimit import RateLimiter

__all__ = [
    "Limits",
    "Plan",
    "Policy",
    "PolicyConfig",
    "PolicyEngine",
    "PolicyError",
    "PolicyEvents",
    "PolicySource",
    "RateLimiter",
    "Route",
    "Target",
    "TargetUnusable",
]
