"""Durations as Faust takes them: a :class:`datetime.timedelta`, a number of seconds (int or float), or a string.

Faust (mode's ``want_seconds``) reads a number, a timedelta, or a rate string ``"N/u"`` (``u`` one of ``s``, ``m``,
``h``, ``d``: ``"100/m"`` is 100 / 60 = 1.67, what mode gives). Beside those this module reads unit strings
(``"500ms"``, ``"5s"``, ``"1.5m"``, ``"2h"``, ``"1d"``, and combinations like ``"1m30s"``) and plain numeric strings
(``"2.5"``: seconds). Anything else raises ValueError naming the value: a duration is never guessed.
"""

from __future__ import annotations

import datetime as dt
import math
import re

__all__ = ["Duration", "to_ms", "to_seconds"]

Duration = dt.timedelta | float | int | str
"""What a duration argument accepts (see the module docstring)."""

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)")
_UNITS = re.compile(r"\s*(?:(?:\d+(?:\.\d*)?|\.\d+)\s*(?:ms|s|m|h|d)\s*)+")
_RATE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*/\s*([smhd])\s*")


def to_seconds(value: Duration, *, what: str = "duration") -> float:
    """``value`` in seconds (float). ``what`` names the argument in the error.

    Raises ValueError for a string that is none of the forms above, a negative or non-finite number, and TypeError
    for another type (a bool included).
    """
    if isinstance(value, bool) or not isinstance(value, (dt.timedelta, int, float, str)):
        raise TypeError(f"{what}: expected a timedelta, seconds (int or float) or a string like '5s', got "
                        f"{type(value).__name__} {value!r}")
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        seconds = _parse(value, what)
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what}: a duration must be finite and >= 0, got {value!r}")
    return seconds


def to_ms(value: Duration, *, what: str = "duration") -> int:
    """``value`` in whole milliseconds (rounded to the nearest): :func:`to_seconds` times 1,000."""
    return round(to_seconds(value, what=what) * 1000)


def _parse(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    rate = _RATE.fullmatch(text)
    if rate is not None:  # mode's rate(): "100/m" is 100 per minute, as a number of per-second units
        return float(rate[1]) / _UNIT_SECONDS[rate[2]]
    if _UNITS.fullmatch(text):
        return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    raise ValueError(f"{what}: {text!r} is not a duration (use a timedelta, seconds, or a string like '500ms', "
                     "'5s', '1m30s', '2h', '1d')")
