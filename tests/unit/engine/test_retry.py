"""with_retry: retries until success, gives up after its timeout, never retries cancellation."""

from __future__ import annotations

import asyncio

import pytest

from stream_processor.engine import retry
from stream_processor.engine.retry import with_retry


async def test_retries_until_the_call_succeeds_and_passes_the_attempt_number(monkeypatch) -> None:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(retry.asyncio, "sleep", fake_sleep)
    attempts: list[int] = []

    async def flaky(attempt: int) -> str:
        attempts.append(attempt)
        if attempt < 3:
            raise ConnectionError("broker down")
        return "ok"

    assert await with_retry(flaky, "test") == "ok"
    assert attempts == [0, 1, 2, 3]
    assert sleeps == [0.1, 0.2, 0.4]  # doubling backoff


async def test_raises_the_last_error_after_the_timeout() -> None:
    calls = 0

    async def down(attempt: int) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError(f"attempt {attempt}")

    with pytest.raises(ConnectionError, match="attempt"):
        await with_retry(down, "test", timeout_s=0.25)
    assert 2 <= calls <= 3  # 0.1 s, then 0.2 s would end past the deadline


async def test_cancellation_is_not_retried() -> None:
    async def cancelled(attempt: int) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await with_retry(cancelled, "test")
