"""The market application: the app ``stream-processor worker`` runs when no ``-A`` is given.

It declares nothing itself: its processors are the YAML's ``stream_processors`` entries of the built-in types
(``trades``, ``orderbook``, ``klines``, ``eos_check``), which :mod:`stream_processor.market.processors` registers.
"""

from __future__ import annotations

from ..engine.app import App
from . import processors  # noqa: F401 - registers the built-in processor types

app = App("stream-processor")
