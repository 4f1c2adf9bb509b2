"""Shared fixtures: the real data folder and a real Kafka broker (started by scripts/kafka.sh)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import broker

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
FEEDS = SHARED_DATA / "feeds" / "binance-hftbacktest"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; its absence fails the test (CI always has it)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data folder {SHARED_DATA} is missing (set SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real broker (see :func:`tests.broker.broker`).

    A broker that cannot be reached or started fails the tests that need it; they never skip.
    """
    with contextlib.ExitStack() as stack:
        try:
            address = stack.enter_context(broker())
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield address
