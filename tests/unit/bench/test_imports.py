"""Every bench under bench/ imports: an engine refactor that moves a name a bench uses fails here, not the day the
bench is next run."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHES = sorted(p.stem for p in (Path(__file__).resolve().parents[3] / "bench").glob("*.py") if p.stem != "__init__")


def test_the_bench_folder_is_found() -> None:
    assert {"latency", "restore", "eos_long", "versions_ab"} <= set(BENCHES)


@pytest.mark.parametrize("name", BENCHES)
def test_bench_imports(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    assert module.__doc__, f"bench/{name}.py has no docstring saying what it measures"
