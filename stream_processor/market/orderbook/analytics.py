"""Order-book metrics of an ``OrderBook``: top of book, spread, microprice, band depth, imbalance, walls.

A book in sync gives its metrics with ``state`` "ok", "crossed", "locked" or "incomplete". A book out of
sync gives nothing under the "snapshot" resync policy; under "unsynced" it gives ``state: "unsynced"``
and the other metrics from the levels it holds, by the same proven-depth rules (see
``stream_processor.market.orderbook.book``).
"""

from __future__ import annotations

import math
from typing import Any

from stream_processor.market.models import Level
from stream_processor.market.orderbook.book import BookSide, OrderBook

_BPS = 10_000.0


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2.0


def _finite(horizon: float | None) -> float | None:
    """A side's horizon for JSON: a price, or None (whole side known, or, infinite, nothing proven)."""
    return horizon if horizon is not None and math.isfinite(horizon) else None


def _walls(levels: list[Level] | None, k: float) -> list[list[float]] | None:
    if levels is None:
        return None
    if not levels:
        return []
    threshold = k * _median([q for _, q in levels])
    return [[p, q] for p, q in levels if q > threshold]


class BookMetrics:
    """Computes one JSON-safe metrics dict from an ``OrderBook`` (stateless: configuration only).

    Parameters:

    - ``bands_bps``: half-widths b (basis points of mid, each finite > 0) of the depth bands: a bid
      level is in band b if ``price >= mid * (1 - b / 10000)``, an ask level if
      ``price <= mid * (1 + b / 10000)`` (inclusive, up to float rounding of the edge).
    - ``imbalance_levels``: N >= 1, levels per side of the top-N imbalance.
    - ``wall_levels``: M >= 1, levels per side searched for walls; ``wall_multiple``: k > 0.

    ``compute(book)`` returns None when the book is not in sync under the "snapshot" resync policy
    (nothing may be emitted), else a dict:

    - ``symbol``, ``update_id`` (the book's last update id), ``event_time_ms`` (ms since epoch, UTC).
    - ``state``: "unsynced" when the book is not in sync (resync policy "unsynced": its levels are the
      diffs' word since a gap, a mismatch or before the first snapshot, unchecked; every field below is
      computed as for an in-sync book, "ok" standing for a proven best bid below a proven best ask).
      In sync: "ok"; "crossed" (best bid > best ask); "locked" (best bid == best ask); or
      "incomplete" (a side has no level within its proven depth: empty, or every known level lies
      beyond what the book can prove, see ``stream_processor.market.orderbook.book``).
    - ``best_bid``, ``best_bid_size``, ``best_ask``, ``best_ask_size``: quote currency / base units;
      None for a side whose best level is not proven.
    - ``mid = (bid + ask) / 2``, ``spread = ask - bid`` (quote currency), ``spread_bps = spread / mid *
      10000``, and ``microprice = (bid * ask_size + ask * bid_size) / (bid_size + ask_size)``: only
      when ``state == "ok"``, else None (a crossed or locked book is reported, never averaged).
      ``microprice`` is the size-weighted mid, as the field commonly uses the word; it is NOT Stoikov's
      micro-price (S. Stoikov, "The micro-price: a high-frequency estimator of future prices",
      Quantitative Finance 18(12), 2018), which adds a learned adjustment to the mid.
    - ``bands``: one dict per b, ``{"bps", "bid_size", "bid_notional", "ask_size", "ask_notional"}``,
      sizes in base units and notionals (sum of price * size) in quote currency; a side's pair is None
      when the band reaches beyond the proven depth, all four are None unless ``state == "ok"``.
    - ``imbalance = (bid_vol - ask_vol) / (bid_vol + ask_vol)`` over the best N levels per side, in
      [-1, 1]: None unless both sides prove N levels (or hold fewer but are known completely), or
      if both volumes are 0. Computed for crossed/locked books too (it needs no mid).
    - ``bid_walls``, ``ask_walls``: ``[[price, size], ...]`` best first, the levels among the best M
      whose size > k * median(size of those M levels); None unless the side proves M levels (or is
      known completely, then over what it holds).
    - ``bid_levels``, ``ask_levels``: levels within the proven depth; ``bid_horizon``, ``ask_horizon``:
      the worst proven price (None: the whole side is known, or, with 0 levels in an unsynced book that
      never had a snapshot, nothing is).

    Cost: O(log n + levels in the widest band + N + M log M) per call. Raises ValueError for bad
    parameters.
    """

    __slots__ = ("bands_bps", "imbalance_levels", "wall_levels", "wall_multiple")

    def __init__(
        self,
        bands_bps: tuple[float, ...] | list[float] = (5.0, 10.0, 25.0),
        imbalance_levels: int = 10,
        wall_levels: int = 20,
        wall_multiple: float = 5.0,
    ) -> None:
        bands = tuple(float(b) for b in bands_bps)
        if any(not (0.0 < b < math.inf) for b in bands):
            raise ValueError(f"bands_bps must be finite and > 0, got {bands_bps!r}")
        for name, n in (("imbalance_levels", imbalance_levels), ("wall_levels", wall_levels)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"{name} must be an int >= 1, got {n!r}")
        if not (0.0 < wall_multiple < math.inf):
            raise ValueError(f"wall_multiple must be finite and > 0, got {wall_multiple!r}")
        self.bands_bps = bands
        self.imbalance_levels = imbalance_levels
        self.wall_levels = wall_levels
        self.wall_multiple = float(wall_multiple)

    def compute(self, book: OrderBook) -> dict[str, Any] | None:
        """Metrics of ``book`` as a JSON-safe dict (see the class docstring); None if it is out of sync under
        the "snapshot" policy."""
        in_sync = book.in_sync
        if not in_sync and book.resync != "unsynced":
            return None
        bids, asks = book.bids, book.asks
        bid = bids.best() if bids.best_is_proven() else None
        ask = asks.best() if asks.best_is_proven() else None
        mid = spread = spread_bps = microprice = None
        if bid is None or ask is None:
            state = "incomplete"
        elif bid[0] > ask[0]:
            state = "crossed"
        elif bid[0] == ask[0]:
            state = "locked"
        else:
            state = "ok"
            (bp, bq), (ap, aq) = bid, ask
            mid = (bp + ap) / 2.0
            spread = ap - bp
            spread_bps = spread / mid * _BPS
            microprice = (bp * aq + ap * bq) / (bq + aq) if bq + aq > 0.0 else None
        if not in_sync:
            state = "unsynced"
        return {
            "symbol": book.symbol,
            "update_id": book.last_update_id,
            "event_time_ms": book.event_time_ms,
            "state": state,
            "best_bid": None if bid is None else bid[0],
            "best_bid_size": None if bid is None else bid[1],
            "best_ask": None if ask is None else ask[0],
            "best_ask_size": None if ask is None else ask[1],
            "mid": mid,
            "spread": spread,
            "spread_bps": spread_bps,
            "microprice": microprice,
            "bands": [self._band(b, mid, bids, asks) for b in self.bands_bps],
            "imbalance": self._imbalance(bids, asks),
            "bid_walls": _walls(bids.proven_top(self.wall_levels), self.wall_multiple),
            "ask_walls": _walls(asks.proven_top(self.wall_levels), self.wall_multiple),
            "bid_levels": bids.proven_count(),
            "ask_levels": asks.proven_count(),
            "bid_horizon": _finite(bids.horizon),
            "ask_horizon": _finite(asks.horizon),
        }

    @staticmethod
    def _band(bps: float, mid: float | None, bids: BookSide, asks: BookSide) -> dict[str, Any]:
        b = a = None
        if mid is not None:
            b = bids.within(mid * (1.0 - bps / _BPS))
            a = asks.within(mid * (1.0 + bps / _BPS))
        return {
            "bps": bps,
            "bid_size": None if b is None else b[0],
            "bid_notional": None if b is None else b[1],
            "ask_size": None if a is None else a[0],
            "ask_notional": None if a is None else a[1],
        }

    def _imbalance(self, bids: BookSide, asks: BookSide) -> float | None:
        top_b = bids.proven_top(self.imbalance_levels)
        top_a = asks.proven_top(self.imbalance_levels)
        if top_b is None or top_a is None:
            return None
        bv = sum(q for _, q in top_b)
        av = sum(q for _, q in top_a)
        total = bv + av
        return (bv - av) / total if total > 0.0 else None

    def __repr__(self) -> str:
        return (
            f"BookMetrics(bands_bps={self.bands_bps!r}, imbalance_levels={self.imbalance_levels}, "
            f"wall_levels={self.wall_levels}, wall_multiple={self.wall_multiple})"
        )
