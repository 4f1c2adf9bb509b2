"""Every program runs in a fresh working directory: Faust's data folders (``<app id>-data``) and the RocksDB tables
of a program declared with ``store='rocksdb://'`` (under ``<app id>-data/rocksdb``) go there, not into the
checkout."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _in_a_scratch_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
