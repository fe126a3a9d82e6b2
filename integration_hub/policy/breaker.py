"""Circuit breakers per (credential, model), per worker process.

Closed: calls pass; consecutive retryable failures are counted. At the threshold
the circuit opens: calls to that target are refused at once (a route falls back
to its next target) for the cool-down. Then it is half-open: one trial call
passes; success closes it, failure opens it again. Per process on purpose: a
breaker reacts to what this worker sees, in microseconds, without a network hop.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    opened_at: float = 0.0
    state: BreakerState = BreakerState.CLOSED
    trial_in_flight: bool = False


StateListener = Callable[[str, str, BreakerState], None]


class Breakers:
    def __init__(
        self, on_change: StateListener | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._circuits: dict[tuple[str, str], _Circuit] = {}
        self._on_change = on_change
        self._clock = clock

    def _set(self, key: tuple[str, str], circuit: _Circuit, state: BreakerState) -> None:
        if circuit.state is not state:
            circuit.state = state
            if self._on_change is not None:
                self._on_change(key[0], key[1], state)

    def allow(self, credential: str, model: str, cooldown: float) -> bool:
        """May a call go to this target now? (In half-open, only one trial at a time.)"""
        circuit = self._circuits.get((credential, model))
        if circuit is None or circuit.state is BreakerState.CLOSED:
            return True
        if circuit.state is BreakerState.OPEN:
            if self._clock() - circuit.opened_at < cooldown:
                return False
            self._set((credential, model), circuit, BreakerState.HALF_OPEN)
        if circuit.trial_in_flight:
            return False
        circuit.trial_in_flight = True
        return True

    def succeeded(self, credential: str, model: str) -> None:
        key = (credential, model)
        circuit = self._circuits.get(key)
        if circuit is not None:
            circuit.failures, circuit.trial_in_flight = 0, False
            self._set(key, circuit, BreakerState.CLOSED)
            # A closed circuit with no failures is what an absent one means: dropping it keeps
            # the table to the targets failing now (models are callers' strings, unbounded).
            del self._circuits[key]

    def released(self, credential: str, model: str) -> None:
        """An allowed call ended saying nothing about the target (cancelled, refused before
        reaching it): its half-open trial, if it was one, goes to the next call."""
        circuit = self._circuits.get((credential, model))
        if circuit is not None:
            circuit.trial_in_flight = False

    def failed(self, credential: str, model: str, threshold: int) -> None:
        key = (credential, model)
        circuit = self._circuits.setdefault(key, _Circuit())
        if circuit.state is BreakerState.OPEN:
            # A late failure of a call let through before it opened: the cool-down runs from
            # the opening, or a busy target's circuit would never get to half-open.
            return
        circuit.failures += 1
        circuit.trial_in_flight = False
        if circuit.state is BreakerState.HALF_OPEN or circuit.failures >= threshold:
            circuit.opened_at = self._clock()
            self._set(key, circuit, BreakerState.OPEN)

    def state(self, credential: str, model: str) -> BreakerState:
        circuit = self._circuits.get((credential, model))
        return circuit.state if circuit else BreakerState.CLOSED
