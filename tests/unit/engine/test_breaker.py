"""The circuit breaker's policy: retry at once below the threshold, then a doubling backoff, half-open, closed."""

from __future__ import annotations

import pytest

from stream_processor.engine.breaker import CircuitBreaker, CircuitState, TaskHealth, worst


def test_failures_below_the_threshold_retry_at_once_and_a_success_resets() -> None:
    breaker = CircuitBreaker(failures=3, backoff_s=1.0, max_backoff_s=30.0)
    health = TaskHealth(last_commit=0.0)
    assert breaker.on_failure(health, "boom", 10.0) is None
    assert breaker.on_failure(health, "boom", 11.0) is None
    assert (health.failures, health.circuit, health.retry_at, health.aborts) == (2, CircuitState.CLOSED, None, 2)
    breaker.on_success(health, 12.0)
    assert (health.failures, health.last_error, health.last_commit) == (0, None, 12.0)


def test_the_threshold_opens_the_circuit_with_a_doubling_capped_backoff() -> None:
    breaker = CircuitBreaker(failures=2, backoff_s=1.0, max_backoff_s=5.0)
    health = TaskHealth(last_commit=0.0)
    assert breaker.on_failure(health, "e1", 0.0) is None
    delays = []
    for now in range(1, 6):
        delays.append(breaker.on_failure(health, f"e{now}", float(now)))
        assert health.circuit is CircuitState.OPEN and health.retry_at == now + delays[-1]
        breaker.on_attempt(health)
        assert health.circuit is CircuitState.HALF_OPEN and health.retry_at is None
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert health.last_error == "e5"
    breaker.on_success(health, 9.0)
    assert health.circuit is CircuitState.CLOSED and health.failures == 0


def test_a_failed_open_always_waits_but_is_not_an_abort() -> None:
    breaker = CircuitBreaker(failures=3, backoff_s=0.5, max_backoff_s=30.0)
    health = TaskHealth(last_commit=0.0)
    assert breaker.on_failure(health, "refused", 100.0, opening=True) == 0.5
    assert health.retry_at == 100.5 and health.circuit is CircuitState.CLOSED and health.aborts == 0


def test_worst_state_of_a_processor() -> None:
    assert worst([]) is CircuitState.CLOSED
    assert worst([CircuitState.CLOSED, CircuitState.HALF_OPEN]) is CircuitState.HALF_OPEN
    assert worst([CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED]) is CircuitState.OPEN


@pytest.mark.parametrize(("failures", "backoff", "top"), [(0, 1.0, 2.0), (1, 0.0, 1.0), (1, 2.0, 1.0)])
def test_bad_settings_are_refused(failures: int, backoff: float, top: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failures, backoff, top)
