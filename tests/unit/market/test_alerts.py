"""Alert rules: event type, direction, interval and higher-interval trend filters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stream_processor.market.alerts import AlertRule, evaluate, update_trends

BOS_UP = {"type": "bos", "direction": 1, "level": 1.1}
BOS_DOWN = {"type": "bos", "direction": -1, "level": 1.0}
SWEEP = {"type": "liquidity_swept", "direction": -1, "level": 1.2}


def test_a_rule_matches_its_event_type_only() -> None:
    rule = AlertRule(name="sweep", event="liquidity_swept")
    assert rule.matches(SWEEP, "1m", {})
    assert not rule.matches(BOS_UP, "1m", {})


def test_direction_and_interval_filters() -> None:
    rule = AlertRule(name="bull bos 5m", event="bos", direction=1, intervals=["5m"])
    assert rule.matches(BOS_UP, "5m", {})
    assert not rule.matches(BOS_DOWN, "5m", {})
    assert not rule.matches(BOS_UP, "1m", {})


def test_against_and_with_the_higher_interval_trend() -> None:
    against = AlertRule(name="against", event="bos", against_trend="1h")
    with_ = AlertRule(name="with", event="bos", with_trend="1h")
    assert not against.matches(BOS_UP, "1m", {})  # no 1h trend yet: trend filters do not fire
    assert not with_.matches(BOS_UP, "1m", {})
    trends = {"1h": -1}
    assert against.matches(BOS_UP, "1m", trends) and not against.matches(BOS_DOWN, "1m", trends)
    assert with_.matches(BOS_DOWN, "1m", trends) and not with_.matches(BOS_UP, "1m", trends)


def test_structure_events_set_the_trend_and_are_judged_before_it() -> None:
    rules = [AlertRule(name="against 1h", event="bos", against_trend="1h")]
    trends: dict[str, int] = {}
    update_trends(trends, BOS_DOWN, "1h")
    assert trends == {"1h": -1}
    update_trends(trends, SWEEP, "1h")  # not a structure event
    assert trends == {"1h": -1}
    alerts = evaluate(rules, BOS_UP, "BTCUSDT", "1m", trends)
    assert alerts == [{"rule": "against 1h", "symbol": "BTCUSDT", "interval": "1m", "event": BOS_UP,
                       "trends": {"1h": -1}}]
    update_trends(trends, {"type": "choch", "direction": 1}, "1h")
    assert evaluate(rules, BOS_UP, "BTCUSDT", "1m", trends) == []


def test_rules_are_validated() -> None:
    with pytest.raises(ValidationError):
        AlertRule(name="x", event="bos", direction=2)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        AlertRule(name="x", event="bos", unknown=1)  # type: ignore[call-arg]
