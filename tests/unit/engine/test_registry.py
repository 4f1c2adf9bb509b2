"""The registry: the seed's YAML form (output_topics as a map of role -> topic, and no ``type``), and processor
types from the entry-point group ``stream_processor.processors`` (this package's market types, and a third party's
faked as a distribution on sys.path)."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from stream_processor.engine import registry
from stream_processor.engine.exceptions import ConfigError
from stream_processor.engine.registry import GROUP, ProcessorType, build_processor, lookup
from stream_processor.engine.settings import load_settings
from stream_processor.engine.testing import TestDriver

SEED = {
    "kafka": {"bootstrap_servers": ["localhost:9092"]},
    "stream_processors": {
        "trade_processor": {
            "consumer_group": "trade-enrichment", "processing_mode": "exactly_once", "batch_size": 100,
            "input_topics": ["raw_trades"], "output_topics": {"enriched": "enriched_trades"},
        },
        "orderbook_processor": {
            "consumer_group": "orderbook-analytics", "input_topics": ["raw_orderbook"],
            "output_topics": {"enriched": "enriched_orderbook"},
        },
        "smc_processor": {
            "consumer_group": "smc-detector", "input_topics": ["raw_trades"],
            "output_topics": {"signals": "smc_signals", "klines": "enriched_klines", "alerts": "alerts"},
        },
    },
    "monitoring": {"metrics_port": 8080, "health_check_port": 8081},
}


def _load(doc: dict) -> object:
    return load_settings("seed.yaml", environ={}, doc=doc)


def test_the_seeds_form_loads_with_types_inferred_and_roles_in_order() -> None:
    settings = _load(SEED)
    procs = settings.stream_processors
    assert {name: p.type for name, p in procs.items()} == {
        "trade_processor": "trades", "orderbook_processor": "orderbook", "smc_processor": "klines"}
    # Written in any order, the roles come out in the type's order: [enriched klines, signals, alerts].
    assert procs["smc_processor"].output_topics == ["enriched_klines", "smc_signals", "alerts"]
    assert procs["trade_processor"].output_topics == ["enriched_trades"]
    assert settings.section("replay") is None  # no replay section: fine for the worker


def test_the_list_form_still_loads_and_type_wins_over_inference() -> None:
    doc = {"kafka": SEED["kafka"], "stream_processors": {
        "trade_processor": {"type": "klines", "input_topics": ["raw_trades"],
                            "output_topics": ["enriched_klines", "smc_signals", "alerts"]}}}
    assert _load(doc).stream_processors["trade_processor"].type == "klines"


def test_an_unknown_role_is_named_with_the_types_roles() -> None:
    doc = {"kafka": SEED["kafka"], "stream_processors": {
        "trade_processor": {"input_topics": ["raw_trades"], "output_topics": {"enrichd": "enriched_trades"}}}}
    with pytest.raises(ConfigError) as info:
        _load(doc)
    assert info.value.key == "stream_processors.trade_processor.output_topics.enrichd"
    assert "roles: ['enriched']" in str(info.value)


def test_a_role_left_out_before_a_given_one_is_an_error() -> None:
    doc = {"kafka": SEED["kafka"], "stream_processors": {
        "smc": {"input_topics": ["raw_trades"], "output_topics": {"signals": "smc_signals"}}}}
    with pytest.raises(ConfigError) as info:
        _load(doc)
    assert info.value.key == "stream_processors.smc.output_topics" and "'enriched'" in str(info.value)


def test_an_entry_no_type_fits_asks_for_a_type() -> None:
    doc = {"kafka": SEED["kafka"], "stream_processors": {
        "mystery": {"input_topics": ["raw_things"], "output_topics": {"out": "things"}}}}
    with pytest.raises(ConfigError) as info:
        _load(doc)
    assert info.value.key == "stream_processors.mystery" and "set `type:`" in str(info.value)


def test_validation_stays_strict_for_unknown_keys() -> None:
    doc = {"kafka": SEED["kafka"], "stream_processors": {
        "trade_processor": {**SEED["stream_processors"]["trade_processor"], "batchsize": 10}}}
    with pytest.raises(ConfigError) as info:
        _load(doc)
    assert info.value.key == "stream_processors.trade_processor.batchsize"


# ---- types from entry points --------------------------------------------------------------------------------------


def test_this_distribution_declares_the_market_types_as_entry_points() -> None:
    declared = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=GROUP)
                if ep.dist is not None and ep.dist.name == "stream-processor"}
    assert declared == {"trades": "stream_processor.market.processors:TRADES",
                        "orderbook": "stream_processor.market.processors:ORDERBOOK",
                        "klines": "stream_processor.market.processors:KLINES"}
    for name in declared:
        type_ = lookup(name)
        assert isinstance(type_, ProcessorType) and type_.name == name
        assert type_.settings.__module__ == "stream_processor.market.settings"


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, ProcessorType]:
    """An empty global registry for the test (types loaded from entry points go there)."""
    types: dict[str, ProcessorType] = {}
    monkeypatch.setattr(registry, "TYPES", types)
    return types


def _distribution(root: Path, module: str, entry_points: dict[str, str], code: str) -> None:
    """A third party's installed distribution in ``root`` (put on sys.path): a module and a dist-info declaring
    ``entry_points`` (name -> ``module:attribute``) in the processor group."""
    (root / f"{module}.py").write_text(textwrap.dedent(code))
    info = root / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}")


THIRD_PARTY = """
    from typing import Literal

    from stream_processor.engine.processor import Processor
    from stream_processor.engine.registry import ProcessorType
    from stream_processor.engine.settings import ProcessorSettings


    class UpperSettings(ProcessorSettings):
        type: Literal["upper"]
        suffix: str = "!"


    class Upper(Processor):
        def process(self, record, ctx):
            ctx.send(self.settings.output_topics[0], record.upper() + self.settings.suffix.encode(), ctx.key)

        def decode(self, value, key, timestamp_ms=None, topic=None):
            return value


    UPPER = ProcessorType("upper", UpperSettings, Upper, keywords=("shout",))


    def make_lower():
        return ProcessorType("lower", ProcessorSettings, Upper)


    NOT_A_TYPE = 42
"""


def _third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry_points: dict[str, str]) -> str:
    module = f"thirdparty_{tmp_path.name.replace('-', '_')}"
    _distribution(tmp_path, module, {n: v.format(module=module) for n, v in entry_points.items()}, THIRD_PARTY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    return module


def _doc(**entries: Any) -> dict[str, Any]:
    return {"kafka": {"bootstrap_servers": ["127.0.0.1:9092"]}, "stream_processors": entries}


def test_a_third_party_type_is_loaded_when_a_yaml_entry_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 fresh_registry: dict[str, ProcessorType]) -> None:
    module = _third_party(tmp_path, monkeypatch, {"upper": "{module}:UPPER"})
    assert module not in sys.modules and "upper" not in fresh_registry
    settings = load_settings("app.yaml", environ={}, doc=_doc(
        shout={"type": "upper", "input_topics": ["in"], "output_topics": ["out"], "suffix": "?"}))
    assert module in sys.modules  # imported on demand, and kept in the global registry
    assert fresh_registry["upper"] is sys.modules[module].UPPER
    entry = settings.stream_processors["shout"]
    assert (type(entry).__name__, entry.suffix) == ("UpperSettings", "?")
    with TestDriver(settings=settings) as driver:
        driver.pipe("in", b"hello", key=b"k")
        assert [r.value for r in driver.read("out")] == [b"HELLO?"]
    assert type(build_processor("shout", settings)).__name__ == "Upper"


def test_an_entry_without_type_may_load_every_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           fresh_registry: dict[str, ProcessorType]) -> None:
    _third_party(tmp_path, monkeypatch, {"upper": "{module}:UPPER", "lower": "{module}:make_lower"})
    settings = load_settings("app.yaml", environ={}, doc=_doc(
        shouter={"input_topics": ["in"], "output_topics": ["out"]}))  # "shout" is the upper type's keyword
    assert settings.stream_processors["shouter"].type == "upper"
    assert {"upper", "lower", "trades", "klines", "orderbook"} <= set(fresh_registry)  # the group's entries
    assert fresh_registry["lower"].name == "lower"  # a callable entry point returns its type


@pytest.mark.parametrize(("value", "words"), [
    ("{module}:NOT_A_TYPE", "not a ProcessorType"),
    ("{module}:UPPER", "the names must agree"),  # declared as "wrong", the type is called "upper"
    ("{module}:MISSING", "cannot be loaded"),
    ("no_such_module_here:X", "cannot be loaded"),
])
def test_a_bad_entry_point_is_an_error_naming_the_yaml_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            fresh_registry: dict[str, ProcessorType], value: str,
                                                            words: str) -> None:
    _third_party(tmp_path, monkeypatch, {"wrong": value})
    with pytest.raises(ConfigError) as info:
        load_settings("app.yaml", environ={}, doc=_doc(p={"type": "wrong", "input_topics": ["in"]}))
    assert (info.value.source, info.value.key) == ("app.yaml", "stream_processors.p.type")
    assert words in info.value.reason and f"{GROUP}:wrong" in info.value.reason
    assert "wrong" not in fresh_registry


def test_an_unknown_type_lists_the_entry_points_without_loading_them(
        fresh_registry: dict[str, ProcessorType]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings("app.yaml", environ={}, doc=_doc(p={"type": "nope", "input_topics": ["in"]}))
    assert info.value.key == "stream_processors.p.type"
    assert "'klines', 'orderbook', 'trades'" in info.value.reason and GROUP in info.value.reason
    assert fresh_registry == {}
