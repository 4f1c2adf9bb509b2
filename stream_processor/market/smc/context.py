"""Where a price stands in the SMC structure of a series: trend, nearest zones and liquidity, premium / discount.

``smc_context(detector, price)`` reads the state an ``SmcDetector`` holds after its latest candle (it changes
nothing) and returns one flat, JSON-safe dict; ``price`` is in quote currency: the latest close, or a trade /
mid price between two candles (the detectors' state is then that of the last CLOSED candle: a zone the price has
just run through is still listed until the next close mitigates it). Unknown values are None.

Keys (prices in quote currency; distances ``*_bps`` in basis points of ``price``, always >= 0):

- ``trend`` (+1 bullish / -1 bearish / None before the first break), ``trend_event`` ("bos" / "choch"),
  ``trend_level`` (the broken swing level), ``trend_since_index`` / ``trend_since_ms`` (0-based candle index and
  ``open_time_ms`` of the candle whose close CONFIRMED the break: the event's ``confirmed_index`` /
  ``confirmed_time_ms``, not the broken swing): the latest ``bos`` / ``choch`` event that no ``bos_cancelled`` /
  ``choch_cancelled`` retracted (``BosChoch.last_break()``; a cancellation always comes with a later-indexed break
  emitted on the same candle, which then holds the trend). After a restore from a snapshot older than ``last_break``
  the since-fields are None until the next break.
- ``ob_above_*``, ``ob_inside_*``, ``ob_below_*`` (``top``, ``bottom``, ``direction``, ``index`` = the block's
  candle; ``bps`` for above / below): the unmitigated order blocks (``OrderBlocks.nearest`` over the blocks of
  ``active()``: found, not mitigated, not cancelled; breaker blocks do not count). A block spans ``[bottom, top]``
  (closed; ``top`` >= ``bottom`` here, also for the candle-0 quirk block whose event has them swapped). It is INSIDE
  when ``bottom <= price <= top``, ABOVE when ``bottom > price`` (``ob_above_bps = 1e4 * (bottom - price) /
  price``), BELOW when ``top < price`` (``ob_below_bps = 1e4 * (price - top) / price``). Nearest above: the lowest
  ``bottom``; nearest below: the highest ``top``; inside, when several contain the price: the latest block (highest
  ``index``). Ties: the highest ``index``, then the bullish one.
- ``fvg_above_*``, ``fvg_inside_*``, ``fvg_below_*``: the same over the open fair value gaps
  (``FairValueGaps.unmitigated()``: not mitigated, not replaced).
- ``liquidity_above_level`` / ``_bps`` / ``_members`` and ``liquidity_below_*``: the nearest UNTAKEN liquidity:
  buy-side above (swing highs), sell-side below (swing lows). A pool is what ``Liquidity.untaken()`` lists: a group
  of ``members`` >= 2 equal highs / lows (level = the mean of its members, as in the ``liquidity`` event) not swept
  yet, or a single swing high / low (``members`` 1: a final swing that joined no group, or the latest swing) not
  swept yet; swept means, as in ``Liquidity``, that a later candle's high reached the anchor level + its range
  (lows: level - range; the range is ``range_percent`` of the high-low range of the candles up to the one that
  confirmed the anchor swing, or ``pip_range``). Read through ``Liquidity.nearest_untaken``. ``liquidity_above``:
  the buy-side pool with the lowest level strictly above ``price``; ``liquidity_below``: the sell-side pool with the
  highest level strictly below; ties: the latest anchor. A buy-side pool at or below ``price`` that is not swept yet
  (the price is within its range, or has gone through it since the last close) is in neither.
- ``range_high`` / ``range_low``: the latest swing high / swing low (``BosChoch.last_swing``; the latest swing can
  still be replaced by a more extreme one), ``equilibrium`` = (high + low) / 2, ``zone`` = "premium" if ``price >
  equilibrium``, "discount" if below, "equilibrium" if equal (no tolerance), ``range_position`` = (price - low) /
  (high - low) (0 at the low, 1 at the high, outside [0, 1] beyond them). ``equilibrium``, ``zone`` and
  ``range_position`` are None unless both swings exist and high > low.

Cost per call: O(unmitigated blocks + open gaps + untaken pools), a few tens of records on real data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # detector.py imports this module
    from stream_processor.market.smc.detector import SmcDetector
    from stream_processor.market.smc.fvg import FairValueGaps

#: Every key ``smc_context`` returns, in order.
CONTEXT_KEYS: tuple[str, ...] = (
    "trend", "trend_event", "trend_level", "trend_since_index", "trend_since_ms",
    *(f"{kind}_{side}_{field}" for kind in ("ob", "fvg") for side, fields in (
        ("above", ("top", "bottom", "direction", "index", "bps")),
        ("inside", ("top", "bottom", "direction", "index")),
        ("below", ("top", "bottom", "direction", "index", "bps")),
    ) for field in fields),
    "liquidity_above_level", "liquidity_above_bps", "liquidity_above_members",
    "liquidity_below_level", "liquidity_below_bps", "liquidity_below_members",
    "range_high", "range_low", "equilibrium", "zone", "range_position",
)  # fmt: skip


def _open_gaps(fvg: FairValueGaps) -> list[tuple[int, float, float, int, int]]:
    """The open gaps as ``(direction, top, bottom, index, open_time_ms)``, in no particular order (the nearest are
    chosen by price, ties by index): read from the detector's open lists (records ``[key, index, open_time_ms, top,
    bottom]``), which ``FairValueGaps.unmitigated()`` also reads, without its copy sorted by index."""
    gaps = [(1, g[3], g[4], g[1], g[2]) for g in fvg._bull]
    gaps += [(-1, g[3], g[4], g[1], g[2]) for g in fvg._bear]
    return gaps


def _nearest_zones(zones: list[tuple], price: float) -> tuple[tuple | None, tuple | None, tuple | None]:
    """``(above, inside, below)`` among ``(direction, top, bottom, index, open_time_ms)`` zones: the rules of
    ``OrderBlocks.nearest`` (closed ranges; lowest bottom above, highest top below, latest inside; ties: the
    highest index, then bullish)."""
    inf = float("inf")
    a_bot, a, i_idx, inside, b_top, b = inf, None, -1, None, -inf, None
    for z in zones:
        direction, top, bottom, index, _ = z
        if top < bottom:
            top, bottom = bottom, top
            z = (direction, top, bottom, index, z[4])
        if bottom > price:
            if bottom < a_bot or (bottom == a_bot and (index > a[3] or (index == a[3] and direction > a[0]))):
                a_bot, a = bottom, z
        elif top < price:
            if top > b_top or (top == b_top and (index > b[3] or (index == b[3] and direction > b[0]))):
                b_top, b = top, z
        elif index > i_idx or (index == i_idx and direction > inside[0]):
            i_idx, inside = index, z
    return a, inside, b


def _zone_keys(prefix: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    return (
        tuple(f"{prefix}_above_{f}" for f in ("top", "bottom", "direction", "index", "bps")),
        tuple(f"{prefix}_inside_{f}" for f in ("top", "bottom", "direction", "index")),
        tuple(f"{prefix}_below_{f}" for f in ("top", "bottom", "direction", "index", "bps")),
    )


_OB_KEYS = _zone_keys("ob")
_FVG_KEYS = _zone_keys("fvg")


def _put_zones(out: dict[str, Any], keys: tuple, found: tuple, price: float) -> None:
    """Write ``(above, inside, below)`` (each None or ``(direction, top, bottom, index, ...)``) under ``keys``."""
    (a_top, a_bot, a_dir, a_idx, a_bps), (i_top, i_bot, i_dir, i_idx), (b_top, b_bot, b_dir, b_idx, b_bps) = keys
    above, inside, below = found
    if above is None:
        out[a_top] = out[a_bot] = out[a_dir] = out[a_idx] = out[a_bps] = None
    else:
        out[a_top], out[a_bot], out[a_dir], out[a_idx] = above[1], above[2], above[0], above[3]
        out[a_bps] = bps(above[2] - price, price)
    if inside is None:
        out[i_top] = out[i_bot] = out[i_dir] = out[i_idx] = None
    else:
        out[i_top], out[i_bot], out[i_dir], out[i_idx] = inside[1], inside[2], inside[0], inside[3]
    if below is None:
        out[b_top] = out[b_bot] = out[b_dir] = out[b_idx] = out[b_bps] = None
    else:
        out[b_top], out[b_bot], out[b_dir], out[b_idx] = below[1], below[2], below[0], below[3]
        out[b_bps] = bps(price - below[1], price)


def bps(distance: float, price: float) -> float:
    """``distance`` in basis points of ``price``."""
    return 1e4 * distance / price


def zone(price: float, high: float, low: float) -> tuple[float | None, str | None]:
    """``(range_position, zone)`` of ``price`` in the swing range ``[low, high]``: position ``(price - low) / (high -
    low)``, zone ``premium`` above the midpoint, ``discount`` below, ``equilibrium`` at it; ``(None, None)`` unless
    ``high > low``."""
    if not high > low:
        return None, None
    mid = (high + low) / 2
    return (price - low) / (high - low), "premium" if price > mid else "discount" if price < mid else "equilibrium"


def smc_context(detector: SmcDetector, price: float) -> dict[str, Any]:
    """Where ``price`` (quote currency, finite, > 0) stands in ``detector``'s structure after its latest candle.

    Returns a new flat JSON-safe dict with the keys ``CONTEXT_KEYS`` (see the module docstring for each one's
    definition and unit); reads the detector only. Raises ValueError for a price that is not a finite number > 0.
    """
    if isinstance(price, bool) or not isinstance(price, int | float) or not 0.0 < price < float("inf"):
        raise ValueError(f"price must be a finite number > 0, got {price!r}")
    price = float(price)
    structure = detector.structure
    out: dict[str, Any] = {}

    last = structure.last_break()
    if last is None:
        out["trend"] = out["trend_event"] = out["trend_level"] = None
        out["trend_since_index"] = out["trend_since_ms"] = None
    else:
        out["trend"], out["trend_event"], out["trend_level"] = last["direction"], last["type"], last["level"]
        out["trend_since_index"], out["trend_since_ms"] = last["confirmed_index"], last["confirmed_time_ms"]

    _put_zones(out, _OB_KEYS, detector.order_blocks.nearest(price), price)
    _put_zones(out, _FVG_KEYS, _nearest_zones(_open_gaps(detector.fvg), price), price)

    up, down = detector.liquidity.nearest_untaken(price)  # (level, members, index, open_time_ms)
    if up is None:
        out["liquidity_above_level"] = out["liquidity_above_bps"] = out["liquidity_above_members"] = None
    else:
        out["liquidity_above_level"] = up[0]
        out["liquidity_above_bps"] = bps(up[0] - price, price)
        out["liquidity_above_members"] = up[1]
    if down is None:
        out["liquidity_below_level"] = out["liquidity_below_bps"] = out["liquidity_below_members"] = None
    else:
        out["liquidity_below_level"] = down[0]
        out["liquidity_below_bps"] = bps(price - down[0], price)
        out["liquidity_below_members"] = down[1]

    high = structure.last_swing(1)
    low = structure.last_swing(-1)
    out["range_high"] = None if high is None else high[0]
    out["range_low"] = None if low is None else low[0]
    if high is not None and low is not None and high[0] > low[0]:
        out["equilibrium"] = (high[0] + low[0]) / 2
        position, out["zone"] = zone(price, high[0], low[0])
        out["range_position"] = position  # after zone: the keys keep CONTEXT_KEYS' order
    else:
        out["equilibrium"] = out["zone"] = out["range_position"] = None
    return out
