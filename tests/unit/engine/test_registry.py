"""The registry's reading of the seed's YAML form: output_topics as a map of role -> topic, and no ``type``."""

from __future__ import annotations

import pytest

from stream_processor.engine.exceptions import ConfigError
from stream_processor.engine.settings import load_settings

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
    assert settings.replay is None  # no replay section: fine for the worker


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
