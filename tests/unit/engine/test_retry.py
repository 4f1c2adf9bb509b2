"""with_retry: retries until success, gives up after its timeout, never retries cancellation."""

from __future__ import annotations

import asyncio
import types

import pytest

from stream_processor.engine import retry
from stream_processor.engine.retry import with_retry


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The retry module's time: every backoff is recorded (``clock[1:]``) and moves the clock (``clock[0]``, s) on at
    once, so a test neither waits nor depends on the machine's speed."""
    now = [1000.0]

    async def fake_sleep(seconds: float) -> None:
        now.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(retry.asyncio, "sleep", fake_sleep)
    monkeypatch.setattr(retry, "time", types.SimpleNamespace(monotonic=lambda: now[0]))  # not the loop's clock
    return now


async def test_retries_until_the_call_succeeds_and_passes_the_attempt_number(clock: list[float]) -> None:
    attempts: list[int] = []

    async def flaky(attempt: int) -> str:
        attempts.append(attempt)
        if attempt < 3:
            raise ConnectionError("broker down")
        return "ok"

    assert await with_retry(flaky, "test") == "ok"
    assert attempts == [0, 1, 2, 3]
    assert clock[1:] == [0.1, 0.2, 0.4]  # doubling backoff


async def test_the_backoff_stops_doubling_at_5_s(clock: list[float]) -> None:
    async def flaky(attempt: int) -> str:
        if attempt < 9:
            raise ConnectionError("broker down")
        return "ok"

    assert await with_retry(flaky, "test") == "ok"
    assert clock[1:] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])


async def test_raises_the_last_error_once_the_next_try_would_start_after_the_timeout(clock: list[float]) -> None:
    calls = 0

    async def down(attempt: int) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError(f"attempt {attempt}")

    with pytest.raises(ConnectionError, match="attempt 1"):
        await with_retry(down, "test", timeout_s=0.25)
    assert calls == 2  # at 0 s and 0.1 s; the next, after 0.2 s more, would start past the 0.25 s deadline
    assert clock[1:] == [0.1]


async def test_cancellation_is_not_retried() -> None:
    async def cancelled(attempt: int) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await with_retry(cancelled, "test")
