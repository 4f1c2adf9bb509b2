"""The engine stands alone: importing it and running an App of its own (no configuration file) never imports the
market application, and runs only what the app registered; a YAML entry naming a market type imports the market
package on demand, through the type's entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import stream_processor
import stream_processor.engine as engine
from stream_processor.engine.settings import ENV_OVERRIDES

ROOT = Path(__file__).resolve().parents[3]


def _run(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ENV_OVERRIDES}  # the settings' defaults, not the caller's
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_app_without_config_runs_only_its_agent_and_never_imports_the_market() -> None:
    out = _run("""
        import json
        import sys

        import stream_processor
        from stream_processor.engine import checkpoint, health, runner  # noqa: F401
        from stream_processor.engine.testing import TestDriver
        from stream_processor.engine.worker import Worker

        app = stream_processor.App("myapp")

        @app.agent("src", sink=["out"])
        async def echo(stream):
            async for value in stream:
                yield value

        settings = app.settings
        worker = Worker(app.settings, app=app)
        with TestDriver(app) as driver:
            driver.pipe("src", {"a": 1})
            echoed = driver.values("out")
        print(json.dumps({
            "app_id": settings.app_id, "bootstrap": settings.kafka.bootstrap_servers,
            "entries": sorted(settings.stream_processors), "runners": [r.name for r in worker.runners],
            "topics": sorted(worker.topics), "echoed": echoed,
            "market": sorted(m for m in sys.modules if m.startswith("stream_processor.market")),
        }))
    """)
    got = json.loads(out)
    assert got["market"] == []
    assert (got["app_id"], got["bootstrap"]) == ("myapp", ["localhost:9092"])  # its id, Faust's default broker
    assert got["entries"] == got["runners"] == ["echo"]  # the agent only: no processor of a YAML it never named
    assert got["topics"] == ["dead_letter", "myapp-echo-state-changelog", "out", "src"]
    assert got["echoed"] == [{"a": 1}]


def test_a_market_type_named_by_a_yaml_entry_imports_the_market_package_on_demand() -> None:
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
