"""The internal market-data model every venue's payload is normalized to.

Units everywhere: prices in quote currency, sizes in base units, times in ms since the Unix
epoch (UTC). Price levels are ``(price, size)`` tuples of floats; a size of 0 removes the level.

Every record ends with ``market``: which of a venue's markets the symbol trades on, so that one symbol on two
markets of a venue keeps two states. Binance: ``"spot"``, ``"usdm"`` (USD-M futures) or ``"coinm"`` (COIN-M
futures, whose contract quantities the decoder has already turned into base units); the normalized form
gives its own (default ``"spot"``). The decoders (``stream_processor.market.serde``) guarantee every field's type
and bounds: ints within 64 bits, finite floats, times within years 1970..9999.
"""

from __future__ import annotations

from dataclasses import dataclass

Level = tuple[float, float]


@dataclass(slots=True)
class Trade:
    """One execution. ``side`` is the aggressor (taker) side: ``"buy"`` or ``"sell"``.

    Binance's ``m`` (is_buyer_maker) true means the aggressor sold. ``market``: the venue's market (Binance
    ``"spot"``, ``"usdm"``, ``"coinm"``); ``size`` is in base units on every market (COIN-M contracts converted).
    """

    venue: str
    symbol: str
    trade_id: int
    price: float
    size: float
    side: str
    time_ms: int
    event_time_ms: int
    market: str = "spot"


@dataclass(slots=True)
class BookTicker:
    """Best bid and ask at update id ``update_id``; ``event_time_ms`` is None where the venue omits it.

    ``market``: the venue's market (Binance ``"spot"``, ``"usdm"``, ``"coinm"``); sizes in base units.
    """

    venue: str
    symbol: str
    update_id: int
    bid_price: float
    bid_size: float
    ask_price: float
    ask_size: float
    event_time_ms: int | None = None
    market: str = "spot"


@dataclass(slots=True)
class DepthUpdate:
    """An L2 diff covering update ids ``first_update_id..last_update_id``.

    ``prev_update_id`` is Binance USD-M's ``pu`` (the previous diff's ``last_update_id``), else None.
    Each level gives the new total size at that price; size 0 removes the level. ``market``: the venue's
    market (Binance ``"spot"``, ``"usdm"``, ``"coinm"``); sizes in base units.
    """

    venue: str
    symbol: str
    first_update_id: int
    last_update_id: int
    bids: list[Level]
    asks: list[Level]
    event_time_ms: int
    prev_update_id: int | None = None
    market: str = "spot"


@dataclass(slots=True)
class DepthSnapshot:
    """A full or partial L2 book as of update id ``last_update_id``; bids best first, asks best first.

    ``market``: the venue's market (Binance ``"spot"``, ``"usdm"``, ``"coinm"``); sizes in base units.
    """

    venue: str
    symbol: str
    last_update_id: int
    bids: list[Level]
    asks: list[Level]
    event_time_ms: int | None = None
    market: str = "spot"


@dataclass(slots=True)
class Kline:
    """One candle of ``interval`` (e.g. ``"1m"``) from ``open_time_ms`` to ``close_time_ms`` inclusive.

    ``volume`` is in base units, ``quote_volume`` in quote currency (USD for COIN-M). ``market``: the venue's
    market (Binance ``"spot"``, ``"usdm"``, ``"coinm"``).
    """

    venue: str
    symbol: str
    interval: str
    open_time_ms: int
    close_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    is_closed: bool
    quote_volume: float = 0.0
    trade_count: int = 0
    event_time_ms: int | None = None
    market: str = "spot"


MarketRecord = Trade | BookTicker | DepthUpdate | DepthSnapshot | Kline

__all__ = [
    "BookTicker",
    "DepthSnapshot",
    "DepthUpdate",
    "Kline",
    "Level",
    "MarketRecord",
    "Trade",
]
