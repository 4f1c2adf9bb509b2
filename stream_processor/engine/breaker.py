"""Per-task failure tracking: consecutive aborts, the circuit breaker and its backoff, the last commit.

A task (one input partition, or a group of co-partitioned ones) whose transaction aborts or that cannot be opened
counts a failure. Below ``failures`` in a row it is reopened at once (a commit) or after the first backoff (an
open, which fails fast while the broker is down); at ``failures`` the circuit opens: the task is paused and tried
again after a backoff that doubles from ``backoff_s`` up to ``max_backoff_s``; the attempt after that wait is
half-open, and the first successful commit closes the circuit. So a partition that cannot commit is neither
retried in a hot loop nor silently given up: ``/health`` and the ``circuit_state`` metric show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CircuitState(StrEnum):
    """The circuit of one task (a str: JSON-safe)."""

    CLOSED = "closed"  #: committing normally, or failing fewer than ``failures`` times in a row
    OPEN = "open"  #: failed ``failures`` times in a row: paused until ``retry_at``
    HALF_OPEN = "half_open"  #: tried again after the wait; the next commit decides


#: Worst first: a processor's circuit state is its worst task's.
_SEVERITY = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


def worst(states: list[CircuitState]) -> CircuitState:
    """The most severe of ``states`` (CLOSED for none)."""
    return max(states, key=_SEVERITY.__getitem__, default=CircuitState.CLOSED)


@dataclass
class TaskHealth:
    """What the runner knows of one assigned task's failures and progress (times: ``time.monotonic()`` s)."""

    last_commit: float  #: the last successful commit, or when the task was assigned
    failures: int = 0  #: consecutive failed commits or opens
    last_error: str | None = None
    circuit: CircuitState = CircuitState.CLOSED
    retry_at: float | None = None  #: when a task that is not open is tried again; None: not scheduled
    aborts: int = 0  #: failed commits since assignment (for the health document)


class CircuitBreaker:
    """The policy above, over :class:`TaskHealth` records; pure (the caller passes the time)."""

    def __init__(self, failures: int, backoff_s: float, max_backoff_s: float) -> None:
        if failures < 1 or backoff_s <= 0 or max_backoff_s < backoff_s:
            raise ValueError(f"bad circuit breaker settings: {failures}, {backoff_s}, {max_backoff_s}")
        self.failures = failures
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s

    def on_success(self, health: TaskHealth, now: float) -> None:
        """A commit went through: the circuit closes and the failure count restarts."""
        health.failures = 0
        health.last_error = None
        health.circuit = CircuitState.CLOSED
        health.retry_at = None
        health.last_commit = now

    def on_failure(self, health: TaskHealth, error: str, now: float, *, opening: bool = False) -> float | None:
        """Count a failure; returns the seconds to wait before the next attempt, or None for "retry at once".

        ``opening``: the failure was opening the task (always waited for, at least ``backoff_s``).
        """
        health.failures += 1
        health.last_error = error
        if not opening:
            health.aborts += 1
        if health.failures >= self.failures:
            health.circuit = CircuitState.OPEN
            delay = min(self.backoff_s * 2.0 ** (health.failures - self.failures), self.max_backoff_s)
        elif opening:
            delay = self.backoff_s
        else:
            health.retry_at = None
            return None
        health.retry_at = now + delay
        return delay

    def on_attempt(self, health: TaskHealth) -> None:
        """The task is being opened again after a wait."""
        health.retry_at = None
        if health.circuit is CircuitState.OPEN:
            health.circuit = CircuitState.HALF_OPEN
