"""smc_context against a brute-force recomputation from the event stream, on EURUSD 15m; hand-made cases."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from bench.smc_parity import load_candles
from stream_processor.market.smc import BosChoch, Candle, FairValueGaps, Liquidity, OrderBlocks, SmcDetector, make_event
from stream_processor.market.smc.context import CONTEXT_KEYS, _nearest_zones, _open_gaps, smc_context

N = 3000
RANGE_PERCENT = 0.01


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> list[Candle]:
    path = shared_data / "smc_reference" / "smart-money-concepts" / "EURUSD" / "EURUSD_15M.csv.gz"
    if not path.is_file():
        pytest.fail(f"reference data missing: {path}")
    return load_candles(path.parent)[:N]


def _prices(c: Candle) -> tuple[float, ...]:
    """The close (a kline's call) and prices a trade between candles could have."""
    return c.close, c.high, c.low, c.open


@pytest.fixture(scope="module")
def run(candles: list[Candle]) -> tuple[list[list[dict]], list[list[dict]]]:
    """Per candle: the events, and the contexts at ``_prices`` of that candle."""
    det = SmcDetector(swing_length=5, range_percent=RANGE_PERCENT)
    events, contexts = [], []
    for c in candles:
        events.append(det.update(c))
        contexts.append([smc_context(det, p) for p in _prices(c)])
    return events, contexts


# ---------------------------------------------------------------- brute force from the events


class Replay:
    """The state the context reads, rebuilt by applying the events in order (plus, for a single swing's sweep,
    which no event reports, the candles: the ``Liquidity`` rule)."""

    def __init__(self, candles: list[Candle]) -> None:
        self.candles = candles
        self.structures: list[dict] = []  # emitted, not cancelled, in emission order
        self.blocks: dict[tuple[int, int], dict] = {}
        self.gaps: dict[tuple[int, int], dict] = {}
        self.swings: dict[int, dict] = {}
        self.groups: dict[tuple[int, int], dict] = {}
        self.version = 0  # of the groups
        self.high = -math.inf
        self.low = math.inf

    def apply(self, t: int, events: list[dict]) -> None:
        c = self.candles[t]
        self.high, self.low = max(self.high, c.high), min(self.low, c.low)
        for e in events:
            kind, key = e["type"], (e["direction"], e["index"])
            if kind in ("bos", "choch"):
                self.structures.append(e)
            elif kind in ("bos_cancelled", "choch_cancelled"):
                base = kind.removesuffix("_cancelled")
                self.structures = [s for s in self.structures if (s["type"], s["index"]) != (base, e["index"])]
            elif kind == "order_block":
                self.blocks[key] = {**e, "mitigated": False}
            elif kind == "order_block_mitigated":
                self.blocks[key]["mitigated"] = True
            elif kind in ("breaker_invalidated", "order_block_cancelled"):
                del self.blocks[key]
            elif kind == "fvg":
                self.gaps[key] = e
            elif kind in ("fvg_mitigated", "fvg_replaced"):
                del self.gaps[key]
            elif kind in ("swing_high", "swing_low"):
                self.swings[e["index"]] = {**e, "swept": self._first_sweep(e)}
            elif kind == "swing_replaced":
                del self.swings[e["index"]]
            elif kind == "liquidity":
                self.groups[key] = {**e, "swept": e["swept_index"] is not None}
                self.version += 1
            elif kind == "liquidity_swept":
                self.groups[key]["swept"] = True

    def _first_sweep(self, e: dict) -> int | None:
        """First candle after the swing whose high reaches level + range (lows: low reaches level - range), the
        range being range_percent of the high-low range of the candles up to the swing's confirmation."""
        pip = RANGE_PERCENT * (self.high - self.low)
        up, down = e["level"] + pip, e["level"] - pip
        for j in range(e["index"] + 1, len(self.candles)):
            c = self.candles[j]
            if (c.high >= up) if e["direction"] == 1 else (c.low <= down):
                return j
        return None

    def view(self, t: int) -> dict:
        """What the context of any price after candle ``t`` depends on."""
        pools = [(g["direction"], g["level"], g["members"], g["index"]) for g in self.groups.values() if not g["swept"]]
        for s in self.swings.values():
            if s["swept"] is not None and s["swept"] <= t:
                continue
            if s.get("checked") != self.version:  # the groups changed since the last look
                s["checked"] = self.version
                s["grouped"] = any(
                    g["direction"] == s["direction"]
                    and g["index"] <= s["index"] <= g["end_index"]
                    and g["range_low"] <= s["level"] <= g["range_high"]
                    for g in self.groups.values()
                )
            if not s["grouped"]:
                pools.append((s["direction"], s["level"], 1, s["index"]))
        highs = [s for s in self.swings.values() if s["direction"] == 1]
        lows = [s for s in self.swings.values() if s["direction"] == -1]
        return {
            "trend": self.structures[-1] if self.structures else None,
            "blocks": _spans(b for b in self.blocks.values() if not b["mitigated"]),
            "gaps": _spans(self.gaps.values()),
            "pools": pools,
            "high": max(highs, key=lambda s: s["index"])["level"] if highs else None,
            "low": max(lows, key=lambda s: s["index"])["level"] if lows else None,
        }


def _spans(zones) -> list[tuple[int, float, float, int]]:
    """(direction, upper bound, lower bound, index) of each zone."""
    return [(z["direction"], max(z["top"], z["bottom"]), min(z["top"], z["bottom"]), z["index"]) for z in zones]


def context_brute(price: float, view: dict) -> dict:
    out: dict = {}
    s = view["trend"]
    if s is not None:
        out |= {"trend": s["direction"], "trend_event": s["type"], "trend_level": s["level"],
                "trend_since_index": s["confirmed_index"], "trend_since_ms": s["confirmed_time_ms"]}  # fmt: skip
    else:
        out |= dict.fromkeys(("trend", "trend_event", "trend_level", "trend_since_index", "trend_since_ms"))
    _zones_brute(out, "ob", view["blocks"], price)
    _zones_brute(out, "fvg", view["gaps"], price)
    for side, direction, sign in (("above", 1, 1), ("below", -1, -1)):
        cands = [p for p in view["pools"] if p[0] == direction and sign * (p[1] - price) > 0]
        if cands:
            best = min(cands, key=lambda p: (sign * p[1], -p[3]))
            out |= {f"liquidity_{side}_level": best[1], f"liquidity_{side}_bps": 1e4 * sign * (best[1] - price) / price,
                    f"liquidity_{side}_members": best[2]}  # fmt: skip
        else:
            out |= dict.fromkeys((f"liquidity_{side}_level", f"liquidity_{side}_bps", f"liquidity_{side}_members"))
    hi, lo = view["high"], view["low"]
    out |= {"range_high": hi, "range_low": lo, "equilibrium": None, "zone": None, "range_position": None}
    if hi is not None and lo is not None and hi > lo:
        eq = (hi + lo) / 2
        zone = "premium" if price > eq else "discount" if price < eq else "equilibrium"
        out |= {"equilibrium": eq, "zone": zone, "range_position": (price - lo) / (hi - lo)}
    return out


def _zones_brute(out: dict, prefix: str, spans: list[tuple], price: float) -> None:
    above = [z for z in spans if z[2] > price]
    below = [z for z in spans if z[1] < price]
    inside = [z for z in spans if z[2] <= price <= z[1]]
    picks = {
        "above": min(above, key=lambda z: (z[2], -z[3], -z[0])) if above else None,
        "inside": min(inside, key=lambda z: (-z[3], -z[0])) if inside else None,
        "below": min(below, key=lambda z: (-z[1], -z[3], -z[0])) if below else None,
    }
    for side, z in picks.items():
        keys = [f"{prefix}_{side}_{f}" for f in ("top", "bottom", "direction", "index")]
        out |= dict(zip(keys, (z[1], z[2], z[0], z[3]) if z else (None,) * 4, strict=True))
        if side == "above":
            out[f"{prefix}_above_bps"] = 1e4 * (z[2] - price) / price if z else None
        elif side == "below":
            out[f"{prefix}_below_bps"] = 1e4 * (price - z[1]) / price if z else None


# ---------------------------------------------------------------- the series


def test_context_equals_the_brute_force_at_every_candle(candles, run):
    events, contexts = run
    replay = Replay(candles)
    seen = dict.fromkeys(("trend", "ob_inside_top", "ob_above_top", "ob_below_top", "fvg_inside_top",
                          "fvg_above_top", "fvg_below_top", "liquidity_above_level", "liquidity_below_level",
                          "range_position"), 0)  # fmt: skip
    multi = 0
    for t, c in enumerate(candles):
        replay.apply(t, events[t])
        view = replay.view(t)
        for price, got in zip(_prices(c), contexts[t], strict=True):
            assert list(got) == list(CONTEXT_KEYS)
            want = context_brute(price, view)
            assert got == want, (t, price, {k: (got[k], want[k]) for k in got if got[k] != want[k]})
            for k in seen:
                seen[k] += got[k] is not None
            multi += (got["liquidity_above_members"] or 0) > 1 or (got["liquidity_below_members"] or 0) > 1
    # every field is exercised on this slice
    assert all(seen.values()), seen
    assert multi
    assert orjson.loads(orjson.dumps(contexts[-1])) == contexts[-1]


def test_the_trend_follows_the_bos_choch_events_and_ignores_cancelled_ones(run):
    events, contexts = run
    flips = cancelled = 0
    for t in range(1, len(events)):
        breaks = [e for e in events[t] if e["type"] in ("bos", "choch")]
        now, before = contexts[t][0], contexts[t - 1][0]
        if breaks:
            assert (now["trend"], now["trend_event"], now["trend_since_index"]) == (
                breaks[-1]["direction"], breaks[-1]["type"], t)  # fmt: skip
            flips += now["trend"] != before["trend"]
            cancelled += any(e["type"].endswith("_cancelled") for e in events[t])
        else:
            assert now["trend"] == before["trend"] and now["trend_since_index"] == before["trend_since_index"]
    assert flips and cancelled


def test_round_trip_mid_series_gives_the_same_contexts(candles, run):
    _, contexts = run
    det = SmcDetector(swing_length=5, range_percent=RANGE_PERCENT)
    for c in candles[:1500]:
        det.update(c)
    det = SmcDetector.from_state(orjson.loads(orjson.dumps(det.to_state())))
    assert [smc_context(det, p) for p in _prices(candles[1499])] == contexts[1499]
    for t in range(1500, len(candles)):
        det.update(candles[t])
        assert [smc_context(det, p) for p in _prices(candles[t])] == contexts[t]


def test_a_snapshot_without_the_last_break_still_restores(candles, run):
    """A BosChoch state written before ``_last_break`` existed: same events; trend known from the structures it
    still holds (confirmation unknown), exact again from the next break on."""
    events, contexts = run
    det = SmcDetector(swing_length=5, range_percent=RANGE_PERCENT)
    for c in candles[:2000]:
        det.update(c)
    state = orjson.loads(orjson.dumps(det.to_state()))
    del state["structure"]["_last_break"]
    old = SmcDetector.from_state(state)
    got = old.structure.last_break()
    if state["structure"]["_emitted"]:
        assert (got["direction"], got["type"], got["confirmed_index"]) == (
            contexts[1999][0]["trend"],
            contexts[1999][0]["trend_event"],
            None,
        )
    else:
        assert got is None
    exact = False
    for t in range(2000, len(candles)):
        assert old.update(candles[t]) == events[t]
        exact = exact or any(e["type"] in ("bos", "choch") for e in events[t])
        if exact:
            assert smc_context(old, candles[t].close) == contexts[t][0]
    assert exact


# ---------------------------------------------------------------- hand-made cases


def test_no_swings_yet_gives_none():
    det = SmcDetector()
    for i in range(6):
        det.update(Candle(1.0 + i, 1.5 + i, 0.5 + i, 1.2 + i, 1.0, 60_000 * i))
    ctx = smc_context(det, 6.2)
    assert list(ctx) == list(CONTEXT_KEYS)
    assert all(v is None for k, v in ctx.items() if not k.startswith("fvg_")), ctx
    assert smc_context(SmcDetector(), 1.0) == dict.fromkeys(CONTEXT_KEYS)


@pytest.mark.parametrize("price", [0.0, -1.0, float("nan"), float("inf"), True, "1.0", None])
def test_invalid_price_is_refused(price):
    with pytest.raises(ValueError):
        smc_context(SmcDetector(), price)


def test_nearest_zones_inside_above_below_and_ties():
    zones = [
        (1, 1.10, 1.00, 5, 0),  # contains 1.05
        (-1, 1.08, 1.02, 9, 0),  # contains 1.05, later: the inside one
        (1, 1.30, 1.20, 3, 0),
        (-1, 1.25, 1.20, 4, 0),  # same bottom as the block at 3, later: the one above
        (1, 0.90, 0.80, 2, 0),
        (1, 0.95, 0.96, 1, 0),  # top < bottom (the candle-0 quirk): spans [0.95, 0.96], nearest below
    ]
    above, inside, below = _nearest_zones(zones, 1.05)
    assert above == (-1, 1.25, 1.20, 4, 0)
    assert inside == (-1, 1.08, 1.02, 9, 0)
    assert below == (1, 0.96, 0.95, 1, 0)
    # edges belong to the zone; same index both directions: the bullish one
    assert _nearest_zones([(1, 1.10, 1.00, 5, 0), (-1, 1.10, 1.00, 5, 0)], 1.10)[1][0] == 1
    assert _nearest_zones([(1, 1.10, 1.00, 5, 0)], 1.00) == (None, (1, 1.10, 1.00, 5, 0), None)
    assert _nearest_zones([], 1.0) == (None, None, None)


def test_price_inside_an_order_block(candles):
    """Mid-series, a price in the middle of each active block: the latest block holding it is ``ob_inside``."""
    det = SmcDetector()
    for c in candles[:2500]:
        det.update(c)
    blocks = det.order_blocks.active()
    assert blocks
    for _, top, bottom, _, _ in blocks:
        price = (top + bottom) / 2
        ctx = smc_context(det, price)
        holding = [b for b in blocks if min(b[1], b[2]) <= price <= max(b[1], b[2])]
        latest = max(holding, key=lambda b: (b[3], b[0]))
        assert (ctx["ob_inside_index"], ctx["ob_inside_direction"]) == (latest[3], latest[0])
        assert ctx["ob_inside_bottom"] <= price <= ctx["ob_inside_top"]
        assert ctx["ob_above_bps"] is None or ctx["ob_above_bps"] > 0
        assert ctx["ob_below_bps"] is None or ctx["ob_below_bps"] > 0


def _structure_only(closes: list[float], swings: list[tuple[int, int, float]]) -> list[dict]:
    """Contexts of a detector whose BosChoch is fed hand-made swings (swing_length=1); the other parts empty."""
    det = SimpleNamespace(
        structure=BosChoch(1), order_blocks=OrderBlocks(1), fvg=FairValueGaps(), liquidity=Liquidity(1)
    )
    by_confirmation = {i + 1: (i, d, lvl) for i, d, lvl in swings}
    out = []
    for t, c in enumerate(closes):
        evs = []
        if t in by_confirmation:
            i, d, lvl = by_confirmation[t]
            evs.append(make_event("swing_high" if d == 1 else "swing_low", d, i, 1000 * i, t, 1000 * t, level=lvl))
        det.structure.update(Candle(c, c + 0.05, c - 0.05, c, 0.0, 1000 * t), evs)
        out.append(smc_context(det, c))
    return out


def test_trend_flips_on_choch_and_a_cancelled_bos_does_not_count():
    # The sequence of test_structure: bullish BOS on swing 3 emitted at 9; at 12 a bearish CHoCH on swing 5
    # (broken at 7) is emitted and cancels that BOS.
    swings = [(1, -1, 1.0), (3, 1, 2.0), (5, -1, 1.5), (7, 1, 2.5), (11, -1, 1.2)]
    closes = [1.2, 1.0, 1.6, 1.9, 1.7, 1.5, 1.9, 1.4, 1.8, 2.1, 1.6, 1.2, 1.4, 1.45]
    ctx = _structure_only(closes, swings)
    brief = [(c["trend"], c["trend_event"], c["trend_level"], c["trend_since_index"], c["trend_since_ms"]) for c in ctx]
    assert brief[:9] == [(None,) * 5] * 9
    assert brief[9:12] == [(1, "bos", 2.0, 9, 9000)] * 3
    assert brief[12:] == [(-1, "choch", 1.5, 12, 12000)] * 2
    # premium / discount over the latest swing high and low
    assert (ctx[13]["range_high"], ctx[13]["range_low"]) == (2.5, 1.2)
    assert ctx[13]["equilibrium"] == 1.85 and ctx[13]["zone"] == "discount"
    assert ctx[13]["range_position"] == pytest.approx((1.45 - 1.2) / 1.3)
    assert (ctx[9]["range_high"], ctx[9]["range_low"], ctx[9]["zone"]) == (2.5, 1.5, "premium")
    assert ctx[1]["range_high"] is None and ctx[1]["zone"] is None


def test_fvg_adapter_reads_the_open_lists_without_unmitigated(candles):
    det = SmcDetector()
    for c in candles:
        det.update(c)
        if det.fvg.open_gaps >= 5:
            break
    bare = SimpleNamespace(_bull=det.fvg._bull, _bear=det.fvg._bear)
    assert sorted(_open_gaps(bare)) == sorted(_open_gaps(det.fvg))
    assert _open_gaps(det.fvg)
