"""Circuit breakers per (credential, model), driven by an injected clock."""

from __future__ import annotations

from integration_hub.policy.breaker import Breakers, BreakerState

KEY, MODEL = "acme/main", "gpt-4o"
THRESHOLD, COOLDOWN = 3, 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def opened(clock: Clock, changes: list[tuple[str, str, BreakerState]] | None = None) -> Breakers:
    """Breakers with KEY/MODEL's circuit just opened (THRESHOLD consecutive failures)."""
    breakers = Breakers(
        on_change=(lambda *change: changes.append(change)) if changes is not None else None, clock=clock
    )
    for _ in range(THRESHOLD):
        breakers.failed(KEY, MODEL, THRESHOLD)
    return breakers


def test_opens_at_the_threshold_of_consecutive_failures() -> None:
    breakers = Breakers(clock=Clock())
    for _ in range(THRESHOLD - 1):
        breakers.failed(KEY, MODEL, THRESHOLD)
        assert breakers.state(KEY, MODEL) is BreakerState.CLOSED
        assert breakers.allow(KEY, MODEL, COOLDOWN)
    breakers.failed(KEY, MODEL, THRESHOLD)
    assert breakers.state(KEY, MODEL) is BreakerState.OPEN
    assert not breakers.allow(KEY, MODEL, COOLDOWN)


def test_a_success_resets_the_count_so_only_consecutive_failures_open_it() -> None:
    breakers = Breakers(clock=Clock())
    for _ in range(3):
        for _ in range(THRESHOLD - 1):
            breakers.failed(KEY, MODEL, THRESHOLD)
        breakers.succeeded(KEY, MODEL)
    assert breakers.state(KEY, MODEL) is BreakerState.CLOSED


def test_refuses_for_the_whole_cooldown_then_lets_exactly_one_trial_through() -> None:
    clock = Clock()
    breakers = opened(clock)
    clock.now += COOLDOWN - 0.001
    assert not breakers.allow(KEY, MODEL, COOLDOWN)
    assert breakers.state(KEY, MODEL) is BreakerState.OPEN
    clock.now += 0.001
    assert breakers.allow(KEY, MODEL, COOLDOWN)  # the trial
    assert breakers.state(KEY, MODEL) is BreakerState.HALF_OPEN
    assert not breakers.allow(KEY, MODEL, COOLDOWN)  # only one at a time
    assert not breakers.allow(KEY, MODEL, COOLDOWN)


def test_a_successful_trial_closes_the_circuit() -> None:
    clock = Clock()
    breakers = opened(clock)
    clock.now += COOLDOWN
    assert breakers.allow(KEY, MODEL, COOLDOWN)
    breakers.succeeded(KEY, MODEL)
    assert breakers.state(KEY, MODEL) is BreakerState.CLOSED
    assert all(breakers.allow(KEY, MODEL, COOLDOWN) for _ in range(10))
    # Closed again means counting from zero: it takes THRESHOLD new failures to reopen.
    for _ in range(THRESHOLD - 1):
        breakers.failed(KEY, MODEL, THRESHOLD)
    assert breakers.state(KEY, MODEL) is BreakerState.CLOSED


def test_a_failed_trial_reopens_it_for_a_fresh_cooldown() -> None:
    clock = Clock()
    breakers = opened(clock)
    clock.now += COOLDOWN
    assert breakers.allow(KEY, MODEL, COOLDOWN)
    breakers.failed(KEY, MODEL, THRESHOLD)  # one failure is enough in half-open
    assert breakers.state(KEY, MODEL) is BreakerState.OPEN
    clock.now += COOLDOWN - 0.001
    assert not breakers.allow(KEY, MODEL, COOLDOWN)
    clock.now += 0.001
    assert breakers.allow(KEY, MODEL, COOLDOWN)


def test_a_released_trial_lets_the_next_call_try() -> None:
    """A trial that ended with no verdict (cancelled, refused before the provider) must not
    leave the circuit half-open with its trial forever "in flight"."""
    clock = Clock()
    breakers = opened(clock)
    clock.now += COOLDOWN
    assert breakers.allow(KEY, MODEL, COOLDOWN)
    breakers.released(KEY, MODEL)
    assert breakers.state(KEY, MODEL) is BreakerState.HALF_OPEN
    assert breakers.allow(KEY, MODEL, COOLDOWN)
    assert not breakers.allow(KEY, MODEL, COOLDOWN)


def test_circuits_are_per_credential_and_model() -> None:
    clock = Clock()
    breakers = opened(clock)
    assert breakers.allow(KEY, "gpt-4o-mini", COOLDOWN)
    assert breakers.allow("acme/other", MODEL, COOLDOWN)
    assert breakers.allow("globex/main", MODEL, COOLDOWN)
    assert breakers.state(KEY, "gpt-4o-mini") is BreakerState.CLOSED


def test_every_state_change_is_reported_once() -> None:
    clock, changes = Clock(), list[tuple[str, str, BreakerState]]()
    breakers = opened(clock, changes)
    breakers.failed(KEY, MODEL, THRESHOLD)  # already open: no new change
    clock.now += COOLDOWN
    breakers.allow(KEY, MODEL, COOLDOWN)
    breakers.failed(KEY, MODEL, THRESHOLD)
    clock.now += COOLDOWN
    breakers.allow(KEY, MODEL, COOLDOWN)
    breakers.succeeded(KEY, MODEL)
    assert changes == [
        (KEY, MODEL, BreakerState.OPEN),
        (KEY, MODEL, BreakerState.HALF_OPEN),
        (KEY, MODEL, BreakerState.OPEN),
        (KEY, MODEL, BreakerState.HALF_OPEN),
        (KEY, MODEL, BreakerState.CLOSED),
    ]


def test_late_failures_of_calls_let_through_before_it_opened_do_not_extend_the_cooldown() -> None:
    clock = Clock()
    breakers = opened(clock)
    clock.now += COOLDOWN / 2
    for _ in range(5):  # calls that were already in flight fail now
        breakers.failed(KEY, MODEL, THRESHOLD)
    clock.now += COOLDOWN / 2
    assert breakers.allow(KEY, MODEL, COOLDOWN)
    assert breakers.state(KEY, MODEL) is BreakerState.HALF_OPEN
