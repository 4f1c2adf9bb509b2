"""Streaming trading sessions (London, New York, kill zones...): is the candle in one, its high and low so far."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stream_processor.market.smc.events import Candle, PerCandle

#: The reference's sessions: (start, end), "HH:MM" UTC, both ends included; start >= end wraps past midnight.
SESSIONS: dict[str, tuple[str, str]] = {
    "Sydney": ("21:00", "06:00"),
    "Tokyo": ("00:00", "09:00"),
    "London": ("07:00", "16:00"),
    "New York": ("13:00", "22:00"),
    "Asian kill zone": ("00:00", "04:00"),
    "London open kill zone": ("6:00", "9:00"),
    "New York kill zone": ("11:00", "14:00"),
    "london close kill zone": ("14:00", "16:00"),
}
CUSTOM = "Custom"

_MINUTE = 60_000
_DAY = 86_400_000
_EPOCH = datetime(1970, 1, 1)


def _minute_of_day(name: str, value: Any) -> int:
    """Minutes after midnight of an "HH:MM" time (as the reference parses it: ``strptime(.., "%H:%M")``)."""
    try:
        when = datetime.strptime(value, "%H:%M")
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a time 'HH:MM', got {value!r}") from None
    return when.hour * 60 + when.minute


def resolve_time_zone(time_zone: str) -> ZoneInfo | None:
    """The zone of the candles' clock: None for "UTC" (no conversion), else a ``ZoneInfo``.

    Like the reference, "GMT" and "UTC" in the name become "Etc/GMT" ("UTC+3" -> "Etc/GMT+3"); a name that is not a
    zone after that is tried as it is (an IANA name such as "America/New_York" or "Etc/UTC"). Raises ValueError
    naming ``time_zone`` when neither is a known zone.
    """
    if not isinstance(time_zone, str) or not time_zone:
        raise ValueError(f"time_zone must be a zone name such as 'UTC', 'GMT+2' or 'Europe/London', got {time_zone!r}")
    if time_zone == "UTC":
        return None
    for name in (time_zone.replace("GMT", "Etc/GMT").replace("UTC", "Etc/GMT"), time_zone):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    raise ValueError(f"time_zone {time_zone!r} is not a known zone ('UTC', 'GMT+N', 'UTC-N' or an IANA name)")


class Sessions(PerCandle):
    """``smartmoneyconcepts.smc.sessions(ohlc, session, start_time, end_time, time_zone)`` (v0.0.27), streamed.

    Definition (the reference's): a candle is in the session when the UTC time of its open, as "HH:MM" (seconds
    dropped), is within ``[start, end]`` (both ends included; when ``start >= end`` the session wraps past
    midnight: ``time >= start or time <= end``, so ``start == end`` is always active). Sessions (UTC): Sydney
    21:00-06:00, Tokyo 00:00-09:00, London 07:00-16:00, New York 13:00-22:00, Asian kill zone 00:00-04:00,
    London open kill zone 06:00-09:00, New York kill zone 11:00-14:00, london close kill zone 14:00-16:00 (names
    spelled as the reference does), Custom (``start`` and ``end`` "HH:MM", required). ``high`` / ``low`` are the
    highest high / lowest low of the run of consecutive active candles up to this one (the reference: ``max(high,
    previous row's High or 0)``, ``min(low, previous row's Low unless 0)``): a run starts over after an inactive
    candle, not at the session's start time, so a gap in the data inside a session does not restart it and a run
    spans days when the session covers the whole day.

    ``time_zone`` (the reference's meaning): the zone of the CLOCK the candles' times were written in; the times
    are converted from it to UTC before the test, and the sessions are always in UTC. Our ``open_time_ms`` is
    real UTC for exchange data (Binance, ``Kline``): leave "UTC" then. It matters for data stamped in a broker's
    local time, read as if UTC (like the reference's EURUSD file). Accepted: "UTC"; the reference's offsets
    "GMT+N" / "UTC+N" / "GMT-N" / "UTC-N", which it maps to the POSIX zones "Etc/GMT+N": beware, the sign is
    POSIX's, so "UTC+2" means a clock two hours BEHIND UTC (a wall time of 10:00 is 12:00 UTC); we keep that
    meaning so that results equal the reference's. Also any IANA name ("Europe/London", "America/New_York",
    "Etc/GMT-2", "Etc/UTC"), with its daylight-saving changes: pandas, which the reference uses, accepts those
    names too but raises on a wall time that a DST change makes ambiguous or non-existent; we take the offset in
    force before the change (``fold=0``) instead. A candle stream in local wall time cannot repeat the hour of
    a fall-back change anyway (times must increase).

    Streaming: every value depends on this candle and the previous ones only (delay 0) and equals the
    reference's. Numbers: ``high`` / ``low`` in quote currency, full precision (the reference stores float32);
    None when the candle is outside the session (the reference writes 0).

    Raises ValueError naming the parameter for an unknown ``session``, a Custom session without ``start`` /
    ``end``, ``start`` / ``end`` given for a named session, a time that is not "HH:MM", an unknown
    ``time_zone``; and for an invalid candle or one not later than the previous one. Memory and cost: O(1).
    """

    __slots__ = (
        "session", "start", "end", "time_zone", "_zone", "_start_min", "_end_min", "_last_time", "_active",
        "_high", "_low", "_offset_day", "_offset_ms", "_values",
    )  # fmt: skip
    _params = ("session", "start", "end", "time_zone")
    _derived = frozenset({"_zone", "_start_min", "_end_min", "_offset_day", "_offset_ms"})

    def __init__(
        self, session: str = "London", start: str | None = None, end: str | None = None, time_zone: str = "UTC"
    ) -> None:
        if session == CUSTOM:
            if start is None or end is None or start == "" or end == "":
                raise ValueError("start and end are required for the Custom session (start='HH:MM', end='HH:MM')")
        elif session in SESSIONS:
            if start is not None or end is not None:
                raise ValueError(f"start and end apply to the Custom session only, not to session {session!r}")
            start, end = SESSIONS[session]
        else:
            names = ", ".join([*SESSIONS, CUSTOM])
            raise ValueError(f"session must be one of {names}; got {session!r}")
        self._start_min = _minute_of_day("start", start)
        self._end_min = _minute_of_day("end", end)
        self._zone = resolve_time_zone(time_zone)
        self.session = session
        self.start = start if session == CUSTOM else None
        self.end = end if session == CUSTOM else None
        self.time_zone = time_zone
        self._offset_day: int | None = None  # wall-clock day whose UTC offset is cached, when it is constant
        self._offset_ms = 0
        self._last_time: int | None = None
        self._active = False  # was the previous candle in the session
        self._high = 0.0  # the reference's High / Low of the previous candle (0 when it was outside)
        self._low = 0.0
        self._values: dict[str, Any] | None = None

    def _offset(self, wall_ms: int) -> int:
        """UTC offset (ms) of the zone at the wall time ``wall_ms``; cached for days without a change."""
        day = wall_ms // _DAY
        if day == self._offset_day:
            return self._offset_ms
        zone = self._zone
        at = _EPOCH + timedelta(milliseconds=wall_ms)
        offset = at.replace(tzinfo=zone).utcoffset()
        midnight = (_EPOCH + timedelta(days=day)).replace(tzinfo=zone)
        if midnight.utcoffset() == offset == (midnight + timedelta(days=1) - timedelta(minutes=1)).utcoffset():
            self._offset_day = day
            self._offset_ms = offset // timedelta(milliseconds=1)
            return self._offset_ms
        self._offset_day = None
        return offset // timedelta(milliseconds=1)

    def utc_minute_of_day(self, open_time_ms: int) -> int:
        """Minutes after UTC midnight of a candle opened at ``open_time_ms`` on the ``time_zone`` clock."""
        utc_ms = open_time_ms if self._zone is None else open_time_ms - self._offset(open_time_ms)
        return utc_ms // _MINUTE % 1440

    def step(self, c: Candle) -> dict[str, Any]:
        """Return this candle's ``{"session", "active", "high", "low"}``.

        ``session``: the name; ``active``: bool; ``high`` / ``low``: the session's highest high and lowest low so far
        (quote currency), None when not active. For a validated ``Candle``.
        """
        t = c.open_time_ms
        if self._last_time is not None and t <= self._last_time:
            raise ValueError(f"candle at {t} ms is not after the previous one at {self._last_time} ms")
        self._last_time = t
        minute = self.utc_minute_of_day(t)
        start, end = self._start_min, self._end_min
        if (start < end and start <= minute <= end) or (start >= end and (start <= minute or minute <= end)):
            high = max(c.high, self._high)  # _high is 0 after an inactive candle, like the reference's row
            low = min(c.low, self._low if self._low != 0 else float("inf"))
            self._active, self._high, self._low = True, high, low
            values = {"session": self.session, "active": True, "high": high, "low": low}
        else:
            self._active, self._high, self._low = False, 0.0, 0.0
            values = {"session": self.session, "active": False, "high": None, "low": None}
        self._values = values
        return dict(values)
