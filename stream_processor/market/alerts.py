"""Alert rules: which Smart Money Concepts events become records on the ``alerts`` topic.

A rule names an SMC event type (``liquidity_swept``, ``bos``, ...), optionally a direction (+1 bullish, -1
bearish), the intervals it watches, and a higher-interval trend filter: ``against_trend: 1h`` fires only when the
event's direction is opposite to the current trend of the same symbol's 1h klines, ``with_trend: 1h`` only when
it agrees. The trend of an interval is the direction of its latest BOS or CHoCH (market structure); while an
interval has none yet, trend filters do not fire.

Example (``stream_processors.<klines processor>.params.alerts`` in the YAML)::

    - {name: liquidity_sweep, event: liquidity_swept}
    - {name: bos_against_1h_trend, event: bos, intervals: [1m], against_trend: 1h}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .smc.events import EVENT_TYPES

STRUCTURE_EVENTS = frozenset({"bos", "choch"})  # the events that set an interval's trend


class AlertRule(BaseModel):
    """One rule; see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    event: str = Field(min_length=1)
    direction: Literal[1, -1] | None = None
    intervals: list[str] | None = None  # None: every interval
    against_trend: str | None = None
    with_trend: str | None = None

    @field_validator("event")
    @classmethod
    def _known_event(cls, value: str) -> str:
        if value not in EVENT_TYPES:
            raise ValueError(f"unknown SMC event type {value!r}; known: {', '.join(sorted(EVENT_TYPES))}")
        return value

    def matches(self, event: dict[str, Any], interval: str, trends: dict[str, int]) -> bool:
        """True if ``event`` (of ``interval``) fires this rule, given the symbol's ``trends`` per interval."""
        if event.get("type") != self.event:
            return False
        if self.direction is not None and event.get("direction") != self.direction:
            return False
        if self.intervals is not None and interval not in self.intervals:
            return False
        direction = event.get("direction")
        if self.against_trend is not None:
            trend = trends.get(self.against_trend)
            if trend is None or direction != -trend:
                return False
        if self.with_trend is not None:
            trend = trends.get(self.with_trend)
            if trend is None or direction != trend:
                return False
        return True


def update_trends(trends: dict[str, int], event: dict[str, Any], interval: str) -> None:
    """Record a BOS or CHoCH of ``interval`` as that interval's trend (its direction)."""
    if event.get("type") in STRUCTURE_EVENTS and event.get("direction") in (1, -1):
        trends[interval] = event["direction"]


def evaluate(
    rules: list[AlertRule], event: dict[str, Any], symbol: str, interval: str, trends: dict[str, int]
) -> list[dict[str, Any]]:
    """The alert records ``event`` raises: ``{"rule", "symbol", "interval", "event", "trends"}`` per matching rule.

    ``trends`` is read as it was before ``event`` (call :func:`update_trends` after), so a BOS is judged against
    the trend it breaks, not the one it makes.
    """
    return [
        {"rule": rule.name, "symbol": symbol, "interval": interval, "event": event, "trends": dict(trends)}
        for rule in rules
        if rule.matches(event, interval, trends)
    ]
