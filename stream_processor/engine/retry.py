"""Retrying a broker call with exponential backoff while the broker is unreachable (a restart takes ~10 s)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# How long a broker call is retried before the error is raised (a broker restart takes ~10 s).
RETRY_S = 90.0


async def with_retry[T](
    call: Callable[[int], Awaitable[T]], what: str, timeout_s: float | None = RETRY_S,
    stop: asyncio.Event | None = None,
) -> T | None:
    """Await ``call(attempt)`` (attempt 0, 1, ...) until it returns; retry any error for ``timeout_s`` seconds.

    Backoff starts at 0.1 s and doubles up to 5 s. Raises the last error once the next try would start after
    ``timeout_s`` (None: retry for as long as it takes). Returns None, without another try, once ``stop`` is set
    (it is also what the backoff waits on). Cancellation is never retried.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    delay = 0.1
    attempt = 0
    while stop is None or not stop.is_set():
        try:
            return await call(attempt)
        except Exception as exc:  # noqa: BLE001 - broker down, coordinator moving, timeouts
            if deadline is not None and time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%r); retrying in %.1f s", what, exc, delay)
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 5.0)
            attempt += 1
    return None
