"""Retrying a broker call with exponential backoff while the broker is unreachable (a restart takes ~10 s)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# How long a broker call is retried before the error is raised (a broker restart takes ~10 s).
RETRY_S = 90.0


async def with_retry[T](call: Callable[[int], Awaitable[T]], what: str, timeout_s: float = RETRY_S) -> T:
    """Await ``call(attempt)`` (attempt 0, 1, ...) until it returns; retry any error for ``timeout_s`` seconds.

    Backoff starts at 0.1 s and doubles up to 5 s. Raises the last error once the next try would start after
    ``timeout_s``. Cancellation is never retried.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    attempt = 0
    while True:
        try:
            return await call(attempt)
        except Exception as exc:  # noqa: BLE001 - broker down, coordinator moving, timeouts
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%r); retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            attempt += 1
