"""The engine stands alone: importing it (and running an App of its own) never imports the market application;
a YAML entry naming a built-in market type imports it on demand."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import stream_processor
import stream_processor.engine as engine

ROOT = Path(__file__).resolve().parents[3]


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_engine_imports_and_runs_without_the_market_package() -> None:
    out = _run("""
        import sys
        import stream_processor.engine
        from stream_processor.engine import testing, runner, worker, checkpoint, health  # noqa: F401
        from stream_processor.engine import App
        from stream_processor.engine.testing import TestDriver

        app = App("t", settings={"kafka": {"bootstrap_servers": ["127.0.0.1:9092"]}})

        @app.agent("src", sink=["out"])
        async def echo(stream):
            async for value in stream:
                yield value

        with TestDriver(app) as driver:
            driver.pipe("src", {"a": 1})
            assert driver.values("out") == [{"a": 1}]
        loaded = sorted(m for m in sys.modules if m.startswith("stream_processor.market"))
        assert not loaded, loaded
        print("engine-only")
    """)
    assert out.strip() == "engine-only"


def test_a_builtin_market_type_imports_the_market_package_on_demand() -> None:
    out = _run("""
        import sys
        from stream_processor.engine.settings import load_settings

        assert "stream_processor.market" not in sys.modules
        doc = {"kafka": {"bootstrap_servers": ["127.0.0.1:9092"]},
               "stream_processors": {"t": {"type": "trades", "input_topics": ["raw_trades"],
                                           "output_topics": ["enriched_trades"]}}}
        settings = load_settings(doc=doc, environ={})
        print(type(settings.stream_processors["t"]).__name__, "stream_processor.market" in sys.modules)
    """)
    assert out.split() == ["TradesProcessorSettings", "True"]


def test_the_public_names_are_reexported_at_the_top() -> None:
    for name in engine.__all__:
        assert getattr(stream_processor, name) is getattr(engine, name)
    assert {"App", "Processor", "ProcessorContext", "PunctuationType", "Record", "StoreSpec", "Table",
            "WindowedTable"} <= set(engine.__all__)
