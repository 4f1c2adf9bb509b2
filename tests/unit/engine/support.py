"""Shared pieces of the engine's unit tests: an App built from a settings document, and drivers closed after use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stream_processor.engine import App
from stream_processor.engine.testing import TestDriver

KAFKA = {"bootstrap_servers": ["127.0.0.1:9092"]}  # never contacted: the TestDriver needs no broker
T0 = 1_700_000_000_000  # the driver's default wall clock at start


def make_app(app_id: str = "t", **doc: Any) -> App:
    """An App whose settings are ``doc`` (``kafka`` added)."""
    return App(app_id, settings={"kafka": KAFKA, **doc})


@pytest.fixture
def drive() -> Iterator[Any]:
    """``drive(app, **kwargs)``: a TestDriver, closed (the engine's wall clock given back) after the test."""
    drivers: list[TestDriver] = []

    def make(app: Any = None, **kwargs: Any) -> TestDriver:
        driver = TestDriver(app, **kwargs)
        drivers.append(driver)
        return driver

    yield make
    for driver in reversed(drivers):
        driver.close()


def reasons(driver: TestDriver) -> list[tuple[str | None, bytes | None]]:
    """``(reason header, value)`` of every dead letter, in order."""
    return [(r.header("reason"), r.value) for r in driver.dead_letters()]
