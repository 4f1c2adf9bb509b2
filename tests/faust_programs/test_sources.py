"""The programs are faust-streaming's own, and the port changes their import lines and nothing else."""

from __future__ import annotations

import asyncio

import pytest

from .harness import PROGRAMS, UPSTREAM_FILES, git_blob_id, load, port, run_faust, source_of
from .scenarios import SCENARIOS
from .test_programs import EXCLUDED

ALL = sorted([*UPSTREAM_FILES, "page_views"])


@pytest.mark.parametrize("name", sorted(UPSTREAM_FILES))
def test_program_is_upstreams_file_byte_for_byte(name: str) -> None:
    path, blob = UPSTREAM_FILES[name]
    assert git_blob_id((PROGRAMS / f"{name}.py").read_bytes()) == blob, f"programs/{name}.py is not {path}"


@pytest.mark.parametrize("name", ALL)
def test_port_changes_only_the_import_lines(name: str) -> None:
    original = source_of(name).splitlines()
    ported = port(source_of(name)).splitlines()
    assert len(ported) == len(original)
    changed = [(a, b) for a, b in zip(original, ported, strict=True) if a != b]
    assert changed, "a program without a Faust import"
    for before, after in changed:
        assert before.startswith(("import faust", "from faust")), before
        assert after in ("import stream_processor as faust",) or after.startswith("from stream_processor"), after
        assert after.replace("stream_processor as faust", "faust").replace("stream_processor", "faust") == before
    assert not any(line.startswith(("import faust", "from faust")) for line in ported)


def test_every_example_is_compared_or_excluded_with_a_reason() -> None:
    compared = {name for name in SCENARIOS if name not in EXCLUDED}
    assert set(ALL) <= compared | set(EXCLUDED)
    assert all(len(reason) > 40 for reason in EXCLUDED.values())
    assert "page_views" in compared and "word_count" in compared


def test_tz_aware_fails_under_faust_itself() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'tz'"):
        load("tz_aware", source_of("tz_aware"))


def test_fastapi_example_needs_fastapi() -> None:
    with pytest.raises(ModuleNotFoundError, match="fastapi"):
        load("fastapi_example", source_of("fastapi_example"))


def test_isolated_partitions_fails_under_fausts_test_context(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = SCENARIOS["isolated_partitions_crashing"]()
    with pytest.raises(TypeError, match="not iterable"):
        asyncio.run(asyncio.wait_for(run_faust("isolated_partitions_crashing", scenario, monkeypatch), timeout=60))
