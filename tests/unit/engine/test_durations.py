"""Durations as Faust takes them, and the unit strings beside them."""

from __future__ import annotations

import datetime as dt

import pytest
from mode.utils.times import want_seconds

from stream_processor.engine.durations import to_ms, to_seconds


@pytest.mark.parametrize("value", [dt.timedelta(minutes=1, seconds=30), 90, 90.0, 2.5, "2.5", "100/m", "10/s", "2/h",
                                   "0.5/d"])
def test_what_faust_reads_is_read_as_faust_reads_it(value: object) -> None:
    assert to_seconds(value) == pytest.approx(want_seconds(value))  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("5s", 5.0), ("1.5m", 90.0), ("2h", 7200.0),
                                               ("1d", 86400.0), ("1m30s", 90.0), (" 1h 30m ", 5400.0)])
def test_unit_strings(text: str, seconds: float) -> None:
    assert to_seconds(text) == seconds


def test_milliseconds_round_to_the_nearest() -> None:
    assert to_ms(dt.timedelta(microseconds=1500)) == 2 and to_ms(0.0014) == 1 and to_ms("1m") == 60_000


@pytest.mark.parametrize("value", ["5 sec", "s", "", "1y", "-5s", float("inf"), -1, float("nan")])
def test_what_is_not_a_duration_is_refused_with_its_name(value: object) -> None:
    with pytest.raises(ValueError, match="window size"):
        to_seconds(value, what="window size")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [True, None, [5]])
def test_other_types_are_a_type_error(value: object) -> None:
    with pytest.raises(TypeError, match="expected a timedelta"):
        to_seconds(value)  # type: ignore[arg-type]
