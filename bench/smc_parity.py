"""Parity of the streaming SMC detectors with the batch ``smartmoneyconcepts`` 0.0.27 results on EURUSD 15m.

Usage: ``python bench/smc_parity.py [--data DIR] [--mismatches N]``.

Feeds the 24,424 candles of ``smc_reference/smart-money-concepts/EURUSD/EURUSD_15M.csv.gz`` (../shared/data, or
``$SHARED_DATA``) one at a time to ``SmcDetector``, rebuilds the reference's result columns from the events
emitted by the end of the data (``rebuild_*``), and compares them per candle with the library's own result files,
over the candles whose result no longer depends on data after the end (``compared_range``). Prints one row per
detector: compared candles, agreement % (all columns of the candle equal), per-column agreement, the events on
each side, and the confirmation delay; then the speed in µs per candle.

Then the other reference functions, each run on its own (``parity_extras``): ``fvg(join_consecutive=True)``
(``FairValueGaps(join_consecutive=True)``), ``previous_high_low`` for "4h", "1D" and "W" (``PreviousHighLow``),
``sessions("London")`` (``Sessions``) and ``retracements`` (``Retracements`` fed a ``SwingDetector``'s events),
over every candle they can be compared on (retracements: all candles, and the settled ones; see
``retracement_rows``), and the speed of each of them.

Comparisons are exact: floats the reference stores as float32 (BOS/CHoCH, order-block and liquidity levels,
previous highs and lows, session highs and lows) are compared after rounding both sides to float32, the others
(swing levels, FVG bounds, retracement %) as float64. Index columns use 0 for "none", like the reference (its NaN
in the files is read as 0 too); so do the None values of the new detectors (the reference writes 0 or NaN).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream_processor.market.smc import Candle, FairValueGaps, Liquidity, SmcDetector, SwingDetector  # noqa: E402
from stream_processor.market.smc.events import f32  # noqa: E402
from stream_processor.market.smc.previous_high_low import PreviousHighLow  # noqa: E402
from stream_processor.market.smc.retracements import Retracements  # noqa: E402
from stream_processor.market.smc.sessions import Sessions  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
EURUSD = SHARED_DATA / "smc_reference" / "smart-money-concepts" / "EURUSD"
SWING_LENGTH = 5
RANGE_PERCENT = 0.01

Row = tuple  # one candle's result columns, in the reference's column order


def load_candles(folder: Path = EURUSD) -> list[Candle]:
    """The input bars as candles; ``Date`` (broker time) is read as UTC like the reference does."""
    out = []
    with gzip.open(folder / "EURUSD_15M.csv.gz", "rt", newline="") as fh:
        for rec in csv.DictReader(fh):
            when = datetime.strptime(rec["Date"], "%Y.%m.%d %H:%M:%S").replace(tzinfo=UTC)
            out.append(
                Candle(
                    float(rec["Open"]), float(rec["High"]), float(rec["Low"]), float(rec["Close"]),
                    float(rec["Volume"]), int(when.timestamp()) * 1000,
                )
            )  # fmt: skip
    return out


def load_reference(name: str, folder: Path = EURUSD, suffix: str = "") -> list[dict[str, float | None]]:
    """One ``<name>_result_data<suffix>.csv.gz`` file: a dict per candle, empty cells as None."""
    with gzip.open(folder / f"{name}_result_data{suffix}.csv.gz", "rt", newline="") as fh:
        return [{k: (float(v) if v != "" else None) for k, v in rec.items()} for rec in csv.DictReader(fh)]


def run(candles: Iterable[Candle], detector: SmcDetector | None = None) -> tuple[list[dict], SmcDetector]:
    """Feed every candle to ``detector`` (a fresh one by default); return all the events in order, and it."""
    det = detector or SmcDetector(swing_length=SWING_LENGTH, range_percent=RANGE_PERCENT)
    events: list[dict] = []
    for c in candles:
        events += det.update(c)
    return events, det


# ---------------------------------------------------------------- rebuilding the reference's columns from events


def rebuild_swings(events: Iterable[dict], n: int) -> list[Row]:
    """(HighLow, Level) per candle: the swings left once every swing_replaced is applied."""
    swings: dict[int, Row] = {}
    for e in events:
        if e["type"] in ("swing_high", "swing_low"):
            swings[e["index"]] = (e["direction"], e["level"])
        elif e["type"] == "swing_replaced":
            del swings[e["index"]]
    return [swings.get(i, (None, None)) for i in range(n)]


def rebuild_structure(events: Iterable[dict], n: int) -> list[Row]:
    """(BOS, CHOCH, Level as float32, BrokenIndex) per candle: the structures left after the cancellations."""
    rows: dict[int, Row] = {}
    for e in events:
        kind = e["type"]
        if kind in ("bos", "choch"):
            d = e["direction"]
            rows[e["index"]] = (d if kind == "bos" else None, d if kind == "choch" else None, f32(e["level"]),
                                e["broken_index"])  # fmt: skip
        elif kind in ("bos_cancelled", "choch_cancelled"):
            del rows[e["index"]]
    return [rows.get(i, (None, None, None, 0)) for i in range(n)]


def rebuild_fvg(events: Iterable[dict], n: int) -> list[Row]:
    """(FVG, Top, Bottom, MitigatedIndex) per candle (a gap joined into the next one, fvg_replaced, is removed)."""
    rows: dict[int, list] = {}
    for e in events:
        if e["type"] == "fvg":
            rows[e["index"]] = [e["direction"], e["top"], e["bottom"], 0]
        elif e["type"] == "fvg_mitigated":
            rows[e["index"]][3] = e["mitigated_index"]
        elif e["type"] == "fvg_replaced":
            del rows[e["index"]]
    return [tuple(rows[i]) if i in rows else (None, None, None, 0) for i in range(n)]


def rebuild_order_blocks(events: Iterable[dict], n: int) -> list[Row]:
    """(OB, Top, Bottom as float32, MitigatedIndex) per candle: live blocks (not invalidated, not cancelled).

    The reference writes its bearish pass after its bullish one into the same arrays, so a candle holding
    both shows the bearish block: the same here.
    """
    blocks: dict[tuple[int, int], list] = {}
    for e in events:
        key = (e["direction"], e["index"])
        if e["type"] == "order_block":
            blocks[key] = [e["direction"], f32(e["top"]), f32(e["bottom"]), 0]
        elif e["type"] == "order_block_mitigated":
            blocks[key][3] = e["mitigated_index"]
        elif e["type"] in ("breaker_invalidated", "order_block_cancelled"):
            del blocks[key]
    rows = []
    for i in range(n):
        b = blocks.get((-1, i)) or blocks.get((1, i))
        rows.append(tuple(b) if b else (None, None, None, 0))
    return rows


def rebuild_liquidity(events: Iterable[dict], n: int) -> list[Row]:
    """(Liquidity, Level as float32, End, Swept) per candle."""
    rows: dict[int, list] = {}
    for e in events:
        if e["type"] == "liquidity":
            rows[e["index"]] = [e["direction"], f32(e["level"]), e["end_index"], e["swept_index"] or 0]
        elif e["type"] == "liquidity_swept":
            rows[e["index"]][3] = e["swept_index"]
    return [tuple(rows[i]) if i in rows else (None, None, 0, 0) for i in range(n)]


def _ix(v: float | None) -> int:
    return 0 if v is None else int(v)


def _f(v: float | None) -> float | None:
    return None if v is None else v


def _f32(v: float | None) -> float | None:
    return None if v is None else f32(v)


def _d(v: float | None) -> int | None:
    return None if v is None else int(v)


def reference_rows(name: str, ref: list[dict]) -> tuple[tuple[str, ...], list[Row]]:
    """The reference file's columns in the shapes ``rebuild_*`` produce."""
    if name == "swings":
        return ("HighLow", "Level"), [(_d(r["HighLow"]), _f(r["Level"])) for r in ref]
    if name == "structure":
        cols = ("BOS", "CHOCH", "Level", "BrokenIndex")
        return cols, [(_d(r["BOS"]), _d(r["CHOCH"]), _f32(r["Level"]), _ix(r["BrokenIndex"])) for r in ref]
    if name in ("fvg", "fvg_consecutive"):
        cols = ("FVG", "Top", "Bottom", "MitigatedIndex")
        return cols, [(_d(r["FVG"]), _f(r["Top"]), _f(r["Bottom"]), _ix(r["MitigatedIndex"])) for r in ref]
    if name == "order_blocks":
        cols = ("OB", "Top", "Bottom", "MitigatedIndex")
        return cols, [(_d(r["OB"]), _f32(r["Top"]), _f32(r["Bottom"]), _ix(r["MitigatedIndex"])) for r in ref]
    if name == "liquidity":
        cols = ("Liquidity", "Level", "End", "Swept")
        return cols, [(_d(r["Liquidity"]), _f32(r["Level"]), _ix(r["End"]), _ix(r["Swept"])) for r in ref]
    if name.startswith("previous_high_low"):
        cols = ("PreviousHigh", "PreviousLow", "BrokenHigh", "BrokenLow")
        return cols, [(_f32(r["PreviousHigh"]), _f32(r["PreviousLow"]), _ix(r["BrokenHigh"]), _ix(r["BrokenLow"]))
                      for r in ref]  # fmt: skip
    if name == "sessions":
        return ("Active", "High", "Low"), [(_ix(r["Active"]), _f32(r["High"]), _f32(r["Low"])) for r in ref]
    if name == "retracements":
        cols = ("Direction", "CurrentRetracement%", "DeepestRetracement%")
        return cols, [(_ix(r["Direction"]), r["CurrentRetracement%"], r["DeepestRetracement%"]) for r in ref]
    raise ValueError(name)


# ---------------------------------------------------------------- comparison

#: detector -> (reference file, rebuild function, confirmation delay as text)
DETECTORS: dict[str, tuple[str, Callable[[Iterable[dict], int], list[Row]], str]] = {
    "swings": ("swing_highs_lows", rebuild_swings, "L (replaced: by a later swing)"),
    "structure": ("bos_choch", rebuild_structure, ">= L after 4th swing; and break"),
    "fvg": ("fvg", rebuild_fvg, "1 (mitigation: 0)"),
    "order_blocks": ("ob", rebuild_order_blocks, "L-1 (mitigation: 0)"),
    "liquidity": ("liquidity", rebuild_liquidity, "member final: next swing + L"),
}


@dataclass
class Parity:
    """Agreement of one detector with the reference over ``compared`` candles."""

    name: str
    compared: int
    equal: int
    columns: dict[str, int]
    ours: int  # candles with a result (non-empty first column) on our side, in the compared range
    theirs: int  # same on the reference side
    both: int  # candles with a result on both sides
    delay: str
    mismatches: list[tuple[int, Row, Row]] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        """% of compared candles whose columns all agree."""
        return 100.0 * self.equal / self.compared

    def column_agreement(self, column: str) -> float:
        """% of compared candles where ``column`` agrees."""
        return 100.0 * self.columns[column] / self.compared


def compared_rows(
    name: str, n: int, unsettled: tuple[int, list[int]] | None = None, swing_length: int = SWING_LENGTH
) -> list[int]:
    """The candles compared: those whose result cannot change with candles after the end of the data.

    The last candle is left out for FVG (a gap at ``i`` needs ``i+1``), the last ``swing_length`` candles
    everywhere a swing is involved (a swing at ``i`` needs ``i+L``; the reference marks the last candle as a
    swing). ``unsettled`` (a detector's ``unsettled()``) leaves out the rows that detector says may still change:
    that is where the reference's end-of-data swing, its guess of the future, can land (BOS/CHoCH: the last
    swings and the structures a later one could cancel; liquidity: the groups a later swing could join).
    Indices (mitigated, broken, swept) are compared as they stand at the end of the data: 0 = not yet.
    """
    end = n - 1 if name == "fvg" else n - swing_length
    if unsettled is None:
        return list(range(end))
    first, indices = unsettled
    skip = set(indices)
    return [i for i in range(min(end, first)) if i not in skip]


def clear_ghost_broken(rows: list[Row]) -> list[Row]:
    """The reference's BOS/CHoCH rows with ``BrokenIndex`` cleared where the row holds no structure.

    The reference removes a structure superseded by a later one (BOS, CHOCH and Level become NaN) but leaves its
    ``BrokenIndex``: there is no structure on those rows, so there is no event either.
    """
    return [r if r[0] is not None or r[1] is not None else (None, None, None, 0) for r in rows]


def compare(
    name: str,
    ours: list[Row],
    ref: list[dict],
    rows: list[int],
    adjust: Callable[[list[Row]], list[Row]] | None = None,
) -> Parity:
    """Per-candle comparison of ``ours`` with the reference file's rows (``adjust``-ed) over the candles ``rows``."""
    cols, theirs = reference_rows(name, ref)
    if adjust is not None:
        theirs = adjust(theirs)
    delay = DETECTORS[name][2] if name in DETECTORS else ""
    p = Parity(name, len(rows), 0, dict.fromkeys(cols, 0), 0, 0, 0, delay)
    for i in rows:
        a, b = ours[i], theirs[i]
        if a == b:
            p.equal += 1
        else:
            p.mismatches.append((i, a, b))
        for k, col in enumerate(cols):
            p.columns[col] += a[k] == b[k]
        p.ours += a[0] not in (None, 0)
        p.theirs += b[0] not in (None, 0)
        p.both += a[0] not in (None, 0) and b[0] not in (None, 0)
    return p


def parity_all(
    candles: list[Candle], events: list[dict], detector: SmcDetector, folder: Path = EURUSD
) -> dict[str, Parity]:
    """Every detector's parity (``detector`` is the one that emitted ``events``, at the end of the data).

    Adds BOS/CHoCH with the reference's ghost ``BrokenIndex`` cleared, and liquidity with the reference's
    whole-frame pip range (given it, the detector reproduces the reference; the default range is causal).
    """
    n = len(candles)
    unsettled = {
        "swings": detector.swings.unsettled(),
        "structure": detector.structure.unsettled(),
        "liquidity": detector.liquidity.unsettled(),
    }
    out = {}
    for name, (file, rebuild, _) in DETECTORS.items():
        rows = compared_rows(name, n, unsettled.get(name))
        out[name] = compare(name, rebuild(events, n), load_reference(file, folder), rows)
    bos = load_reference("bos_choch", folder)
    rows = compared_rows("structure", n, unsettled["structure"])
    cleared = compare("structure", rebuild_structure(events, n), bos, rows, adjust=clear_ghost_broken)
    cleared.name = "structure (ghosts cleared)"
    out["structure_ghosts_cleared"] = cleared
    out["liquidity"].name = "liquidity (causal range)"
    pip = RANGE_PERCENT * (max(c.high for c in candles) - min(c.low for c in candles))
    liq_events, liq = replay_liquidity(candles, events, pip)
    rows = compared_rows("liquidity", n, liq.unsettled())
    fixed = compare("liquidity", rebuild_liquidity(liq_events, n), load_reference("liquidity", folder), rows)
    fixed.name = "liquidity (reference range)"
    out["liquidity_reference_range"] = fixed
    return out


def replay_liquidity(candles: list[Candle], events: list[dict], pip_range: float) -> tuple[list[dict], Liquidity]:
    """Run a ``Liquidity(pip_range=...)`` over the candles and the swing events of ``events``; return its events
    and the detector."""
    by_candle: dict[int, list[dict]] = {}
    for e in events:
        if e["type"] in ("swing_high", "swing_low", "swing_replaced"):
            by_candle.setdefault(e["confirmed_index"], []).append(e)
    liq = Liquidity(SWING_LENGTH, RANGE_PERCENT, pip_range=pip_range)
    out: list[dict] = []
    for t, c in enumerate(candles):
        out += liq.update(c, by_candle.get(t, []))
    return out, liq


# ---------------------------------------------------------------- the other reference functions, run on their own

#: The time frames of the reference's previous_high_low result files.
TIME_FRAMES = ("4h", "1D", "W")


def run_fvg_consecutive(candles: Iterable[Candle]) -> tuple[list[dict], FairValueGaps]:
    """Feed every candle to a ``FairValueGaps(join_consecutive=True)``; return its events and it."""
    det = FairValueGaps(join_consecutive=True)
    events: list[dict] = []
    for c in candles:
        events += det.step(c)
    return events, det


def rebuild_previous_high_low(values: list[dict]) -> list[Row]:
    """(PreviousHigh, PreviousLow as float32, BrokenHigh, BrokenLow as 0/1) from ``PreviousHighLow.step``'s values."""
    return [(_f32(v["previous_high"]), _f32(v["previous_low"]), int(v["broken_high"]), int(v["broken_low"]))
            for v in values]  # fmt: skip


def rebuild_sessions(values: list[dict]) -> list[Row]:
    """(Active 0/1, High, Low as float32, 0 when not active) from ``Sessions.step``'s values."""
    return [(int(v["active"]), f32(v["high"] or 0.0), f32(v["low"] or 0.0)) for v in values]


def rebuild_retracements(values: list[dict]) -> list[Row]:
    """(Direction, CurrentRetracement%, DeepestRetracement%) per reference ROW: row ``t+1`` holds candle ``t``'s
    values (the reference shifts its columns one row down); None (warm-up) as 0; row 0 (the reference's
    wrap-around, the last candle's values) as zeros."""
    rows: list[Row] = [(0, 0.0, 0.0)]
    for v in values[:-1]:
        rows.append((v["direction"] or 0, v["current_retracement_pct"] or 0.0, v["deepest_retracement_pct"] or 0.0))
    return rows


def run_retracements(candles: list[Candle]) -> tuple[list[dict], list[int | None], list[dict], Retracements]:
    """Feed a ``SwingDetector`` and a ``Retracements`` (swing_length 5) every candle; return the retracement values
    per candle, the swing each was measured from (``swing_index``), the swing events and the detector."""
    swings, det = SwingDetector(SWING_LENGTH), Retracements(SWING_LENGTH)
    values, anchors, swing_events = [], [], []
    for c in candles:
        ev = swings.step(c)
        swing_events += ev
        values.append(det.step(c, ev))
        anchors.append(det.swing_index)
    return values, anchors, swing_events, det


def retracement_rows(anchors: list[int | None], swing_events: list[dict], n: int) -> tuple[list[int], list[int]]:
    """Reference rows compared for retracements: (all, settled).

    All: rows 1 .. n-1 (candles 0 .. n-2; row 0 is the reference's wrap-around). Settled: the rows of the candles
    ``t`` whose swing known at ``t`` (``anchors[t]``) is in the final swing set (never replaced) and whose next
    final swing comes after ``t``: at those candles the reference's latest swing is the one we know.
    """
    final = sorted(i for i, r in enumerate(rebuild_swings(swing_events, n)) if r[0] is not None)
    settled = []
    for t in range(n - 1):
        k = anchors[t]
        if k is None or not final:
            continue
        j = bisect_right(final, k)
        if final[j - 1] != k or (j < len(final) and final[j] <= t):
            continue
        settled.append(t + 1)
    return list(range(1, n)), settled


def parity_extras(candles: list[Candle], folder: Path = EURUSD) -> dict[str, Parity]:
    """Parity of FairValueGaps(join_consecutive=True), PreviousHighLow (4h, 1D, W), Sessions("London") and
    Retracements (all candles, settled candles) with the reference's result files."""
    n = len(candles)
    out: dict[str, Parity] = {}
    events, _ = run_fvg_consecutive(candles)
    ref = load_reference("fvg_consecutive", folder)
    p = compare("fvg_consecutive", rebuild_fvg(events, n), ref, list(range(n - 1)))
    p.delay = "1 (joined: 2; mitigation: 0)"
    out["fvg_consecutive"] = p
    for tf in TIME_FRAMES:
        det = PreviousHighLow(tf)
        values = [det.step(c) for c in candles]
        ref = load_reference("previous_high_low", folder, f"_{tf}")
        p = compare(f"previous_high_low_{tf}", rebuild_previous_high_low(values), ref, list(range(n)))
        p.delay = "0"
        out[f"previous_high_low_{tf}"] = p
    det = Sessions("London")
    values = [det.step(c) for c in candles]
    p = compare("sessions", rebuild_sessions(values), load_reference("sessions", folder), list(range(n)))
    p.name, p.delay = "sessions (London)", "0"
    out["sessions"] = p
    values, anchors, swing_events, _ = run_retracements(candles)
    ours, ref = rebuild_retracements(values), load_reference("retracements", folder)
    every, settled = retracement_rows(anchors, swing_events, n)
    p = compare("retracements", ours, ref, every)
    p.name, p.delay = "retracements (all)", "0; swings known L late"
    out["retracements"] = p
    p = compare("retracements", ours, ref, settled)
    p.name, p.delay = "retracements (settled)", "0 (settled candles)"
    out["retracements_settled"] = p
    return out


def speed_extras(candles: list[Candle]) -> dict[str, float]:
    """µs per candle of each of the other detectors, alone (Retracements: its own step, the swing events given)."""
    out: dict[str, float] = {}

    def timed(name: str, feed: Callable[[], object]) -> None:
        start = time.perf_counter()
        feed()
        out[name] = (time.perf_counter() - start) / len(candles) * 1e6

    timed("FairValueGaps(join_consecutive=True)", lambda: run_fvg_consecutive(candles))
    for tf in TIME_FRAMES:
        det_p = PreviousHighLow(tf)
        timed(f"PreviousHighLow({tf!r})", lambda d=det_p: [d.step(c) for c in candles])
    det_s = Sessions("London")
    timed("Sessions('London')", lambda: [det_s.step(c) for c in candles])
    det_i = Sessions("London", time_zone="Europe/London")
    timed("Sessions('London', time_zone='Europe/London')", lambda: [det_i.step(c) for c in candles])
    swings = SwingDetector(SWING_LENGTH)
    swing_events = [swings.step(c) for c in candles]
    det_r = Retracements(SWING_LENGTH)
    timed("Retracements(5)", lambda: [det_r.step(c, e) for c, e in zip(candles, swing_events, strict=True)])
    return out


def measured_delays(events: list[dict]) -> dict[str, tuple[int, int]]:
    """Median and max, in candles, of ``confirmed_index`` minus the candle that completes each detector's pattern.

    swings: the swing candle; structure: the swing whose level is broken; fvg: the gap candle; order blocks: the
    candle that closed beyond the swing (``formed_index``); liquidity: the group's latest member (``end_index``).
    """
    anchors: dict[str, Callable[[dict], int | None]] = {
        "swings": lambda e: e["index"] if e["type"] in ("swing_high", "swing_low") and not e["synthetic"] else None,
        "structure": lambda e: e["index"] if e["type"] in ("bos", "choch") else None,
        "fvg": lambda e: e["index"] if e["type"] == "fvg" else None,
        "order_blocks": lambda e: e["formed_index"] if e["type"] == "order_block" else None,
        "liquidity": lambda e: e["end_index"] if e["type"] == "liquidity" else None,
    }
    out = {}
    for name, anchor in anchors.items():
        delays = sorted(e["confirmed_index"] - a for e in events if (a := anchor(e)) is not None)
        out[name] = (delays[len(delays) // 2], delays[-1]) if delays else (0, 0)
    return out


def main(argv: list[str] | None = None) -> None:
    """Print the parity table and the speed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=EURUSD, help="folder of EURUSD_15M.csv.gz and the result files")
    ap.add_argument("--mismatches", type=int, default=0, help="print up to N mismatching candles per detector")
    args = ap.parse_args(argv)

    candles = load_candles(args.data)
    start = time.perf_counter()
    events, detector = run(candles)
    elapsed = time.perf_counter() - start
    results = parity_all(candles, events, detector, args.data)

    delays = measured_delays(events)
    print(f"EURUSD 15m: {len(candles)} candles, {len(events)} events, swing_length={SWING_LENGTH}")
    print("ours / ref / both: compared candles with a result on our side, the reference's, both")
    head = f"{'detector':28} {'compared':>8} {'agree %':>8}  {'ours':>5} {'ref':>5} {'both':>5}"
    print(f"{head}  {'delay med/max':>13}  confirmation delay (definition)   per column agreement %")
    for key, p in results.items():
        cols = " ".join(f"{c}={p.column_agreement(c):.3f}" for c in p.columns)
        med, top = delays[key.split("_ghosts")[0].split("_reference")[0]]
        print(
            f"{p.name:28} {p.compared:8d} {p.agreement:8.3f}  {p.ours:5d} {p.theirs:5d} {p.both:5d}  "
            f"{f'{med}/{top}':>13}  {p.delay:32} {cols}"
        )
        for i, a, b in p.mismatches[: args.mismatches]:
            print(f"    candle {i}: ours {a} reference {b}")
    print(f"speed: {elapsed / len(candles) * 1e6:.1f} µs per candle (all detectors, one core)")

    print("other reference functions, each detector on its own (retracements: reference row t+1 = our candle t)")
    for p in parity_extras(candles, args.data).values():
        cols = " ".join(f"{c}={p.column_agreement(c):.3f}" for c in p.columns)
        print(
            f"{p.name:28} {p.compared:8d} {p.agreement:8.3f}  {p.ours:5d} {p.theirs:5d} {p.both:5d}  "
            f"{'':>13}  {p.delay:32} {cols}"
        )
        for i, a, b in p.mismatches[: args.mismatches]:
            print(f"    row {i}: ours {a} reference {b}")
    for name, us in speed_extras(candles).items():
        print(f"speed: {us:.2f} µs per candle, {name} alone")


if __name__ == "__main__":
    main()
