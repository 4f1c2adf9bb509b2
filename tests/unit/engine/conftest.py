"""Fixtures of the engine's unit tests (see :mod:`tests.unit.engine.support`)."""

from tests.unit.engine.support import drive

__all__ = ["drive"]
