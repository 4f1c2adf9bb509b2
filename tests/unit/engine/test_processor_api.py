"""The processor API through the TestDriver: a Processor written outside the package, registered with
``@app.processor`` (or the global registry) and enabled from YAML, its stores, its punctuation and its errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ConfigDict, Field

from stream_processor.engine import Processor, ProcessorContext, PunctuationType, StoreSpec
from stream_processor.engine import registry as registry_module
from stream_processor.engine.exceptions import ConfigError, InvalidRecordError
from stream_processor.engine.registry import ProcessorType
from stream_processor.engine.settings import ProcessorSettings, load_settings
from tests.unit.engine.support import KAFKA, make_app, reasons

# ---- the case: a counter processor, all of it outside the package ------------------------------


class CounterParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    step: int = Field(default=1, gt=0)


class CounterSettings(ProcessorSettings):
    params: CounterParams = CounterParams()


class Counter(Processor):
    """Counts records per ``word``; sends the new count to its first output topic."""

    def process(self, record: Any, context: ProcessorContext) -> None:
        word = record.get("word")
        if not isinstance(word, str):
            raise InvalidRecordError("no word")
        store = context.state()
        count = (store.get(word) or 0) + self.params.step
        store.put(word, count)
        context.send(self.output_topics[0], {"word": word, "count": count}, key=word)


COUNTS_ENTRY = {"type": "counter", "input_topics": ["words"], "output_topics": ["word_counts"],
                "params": {"step": 2}}


def counter_app(**entry: Any) -> Any:
    app = make_app(stream_processors={"counts": {**COUNTS_ENTRY, **entry}})
    app.processor("counter", settings=CounterSettings)(Counter)
    return app


def test_a_processor_registered_outside_the_package_validates_from_yaml() -> None:
    settings = counter_app().settings
    entry = settings.stream_processors["counts"]
    assert isinstance(entry, CounterSettings)
    assert entry.type == "counter"
    assert entry.consumer_group == "t-counts"  # <app_id>-<entry name>
    assert entry.params == CounterParams(step=2)
    assert (entry.input_topics, entry.output_topics) == (["words"], ["word_counts"])


def test_the_registered_processor_runs_with_its_params_and_state(drive) -> None:
    driver = drive(counter_app())
    assert isinstance(driver.processors["counts"], Counter)
    for word in ["a", "b", "a"]:
        driver.pipe("words", {"word": word}, key=word)
    assert driver.values("word_counts") == [{"word": "a", "count": 2}, {"word": "b", "count": 2},
                                            {"word": "a", "count": 4}]
    assert [r.key for r in driver.read("word_counts")] == []  # read() consumed them
    assert driver.table() == {"a": 4, "b": 2}
    assert [(r.key, r.value) for r in driver.changelog("counts")] == [(b"a", b"2"), (b"b", b"2"), (b"a", b"4")]
    assert driver.changelog("counts")[0].topic == "t-counts-state-changelog"


def test_the_counts_survive_a_restart(drive) -> None:
    driver = drive(counter_app())
    driver.pipe("words", {"word": "a"}, key="a")
    driver.restart()
    driver.pipe("words", {"word": "a"}, key="a")
    assert [v["count"] for v in driver.values("word_counts")] == [2, 4]
    assert driver.dead_letters() == []


def test_a_restart_aborts_the_open_transaction_and_replays_it_once(drive) -> None:
    driver = drive(counter_app(), commit_every=3)
    driver.pipe("words", {"word": "a"}, key="a")
    driver.pipe("words", {"word": "a"}, key="a")
    driver.restart()  # the two records were not committed: their effects are dropped and they are read again
    driver.pipe("words", {"word": "a"}, key="a")  # the third: the transaction commits
    assert [v["count"] for v in driver.values("word_counts")] == [2, 4, 6]
    assert [r.value for r in driver.changelog("counts")] == [b"6"]  # one commit, the last state only


def settings_error(app: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        _ = app.settings
    return info.value


def test_bad_params_name_the_key() -> None:
    assert settings_error(counter_app(params={"step": 0})).key == "stream_processors.counts.params.step"
    assert settings_error(counter_app(params={"stpe": 1})).key == "stream_processors.counts.params.stpe"


def test_a_disabled_entry_does_not_run(drive) -> None:
    app = make_app(stream_processors={"counts": {**COUNTS_ENTRY, "enabled": False},
                                      "echo": {"input_topics": ["words"], "output_topics": ["echoed"]}})
    app.processor("counter", settings=CounterSettings)(Counter)
    app.processor("echo")(Echo)
    driver = drive(app)
    assert list(driver.processors) == ["echo"]
    driver.pipe("words", {"word": "a"})
    assert driver.values("word_counts") == []
    assert driver.values("echoed") == [{"word": "a"}]


class Echo(Processor):
    def process(self, record: Any, context: ProcessorContext) -> None:
        context.send(self.output_topics[0], record, key=context.key)


def test_an_unknown_type_names_the_key_and_the_known_types() -> None:
    err = settings_error(counter_app(type="countr"))
    assert err.key == "stream_processors.counts.type"
    assert "'countr'" in err.reason and "'counter'" in err.reason  # the app's own types are listed


def test_an_entry_without_type_names_its_own_key() -> None:
    app = make_app(stream_processors={"mystery": {"input_topics": ["x"]}})
    err = settings_error(app)
    assert err.key == "stream_processors.mystery"
    assert "no processor type 'mystery'" in err.reason


def test_the_type_defaults_to_the_entry_name() -> None:
    app = make_app(stream_processors={"counter": {"input_topics": ["words"], "output_topics": ["c"]}})
    app.processor(settings=CounterSettings)(type("Counter", (Counter,), {}))  # default type name: the class's
    entry = app.settings.stream_processors["counter"]
    assert entry.type == "counter" and entry.consumer_group == "t-counter"


def test_a_type_name_is_registered_once() -> None:
    app = make_app()
    app.processor("counter")(Counter)
    with pytest.raises(ValueError, match="already registered"):
        app.processor("counter")(Echo)


def test_an_implicit_processor_runs_without_a_yaml_entry(drive) -> None:
    app = make_app()
    app.processor("echo", implicit=True, input_topics=["in"], output_topics=["out"])(Echo)
    settings = app.settings
    assert settings.stream_processors["echo"].consumer_group == "t-echo"
    driver = drive(app)
    driver.pipe("in", {"x": 1}, key="k")
    assert [(r.key, r.json()) for r in driver.read("out")] == [(b"k", {"x": 1})]


def test_the_global_registry_takes_types_from_outside_the_package(monkeypatch, drive) -> None:
    monkeypatch.setitem(registry_module.TYPES, "ext_counter",
                        ProcessorType("ext_counter", CounterSettings, Counter))
    doc = {"kafka": KAFKA, "stream_processors": {"c": {**COUNTS_ENTRY, "type": "ext_counter"}}}
    settings = load_settings(doc=doc, environ={})
    assert isinstance(settings.stream_processors["c"], CounterSettings)
    driver = drive(settings=settings)
    driver.pipe("words", {"word": "z"}, key="z")
    assert driver.values("word_counts") == [{"word": "z", "count": 2}]


def test_registering_another_factory_under_a_taken_name_is_refused(monkeypatch) -> None:
    monkeypatch.setitem(registry_module.TYPES, "ext_counter", ProcessorType("ext_counter", CounterSettings, Counter))
    registry_module.register(ProcessorType("ext_counter", CounterSettings, Counter))  # the same: fine
    with pytest.raises(ValueError, match="already registered"):
        registry_module.register(ProcessorType("ext_counter", CounterSettings, Echo))


# ---- errors -------------------------------------------------------------------------------------


def test_a_record_error_dead_letters_the_record_and_drops_what_it_sent(drive) -> None:
    class SendsThenRefuses(Counter):
        def process(self, record: Any, context: ProcessorContext) -> None:
            context.send("word_counts", {"early": True})
            super().process(record, context)

    app = make_app(stream_processors={"counts": COUNTS_ENTRY})
    app.processor("counter", settings=CounterSettings)(SendsThenRefuses)
    driver = drive(app)
    driver.pipe("words", {"word": "a"}, key="a")
    bad = driver.pipe("words", {"noword": 1}, key="a", headers=[("trace", b"1")])
    driver.pipe("words", b"{not json", key="a")
    assert driver.values("word_counts") == [{"early": True}, {"word": "a", "count": 2}]
    letters = driver.dead_letters()
    assert [r.header("reason") for r in letters] == ["invalid", "undecodable"]
    first = letters[0]
    assert (first.key, first.value) == (b"a", b'{"noword":1}')
    assert first.header("error") == "no word"
    assert (first.header("processor"), first.header("source_topic")) == ("counts", "words")
    assert (first.header("source_partition"), first.header("source_offset")) == ("0", str(bad.offset))
    assert driver.table() == {"a": 2}


def test_a_processing_error_rolls_the_state_back(drive) -> None:
    class Buggy(Counter):
        def process(self, record: Any, context: ProcessorContext) -> None:
            super().process(record, context)  # changes the state and sends ...
            if record["word"] == "boom":
                raise ZeroDivisionError("bug")  # ... then fails

    app = make_app(stream_processors={"counts": COUNTS_ENTRY})
    app.processor("counter", settings=CounterSettings)(Buggy)
    driver = drive(app)
    driver.pipe("words", {"word": "boom"}, key="boom")
    assert driver.values("word_counts") == []
    assert driver.table() == {}
    assert driver.changelog("counts") == []
    assert reasons(driver) == [("processing_error", b'{"word":"boom"}')]
    assert "ZeroDivisionError" in driver.dead_letters()[0].header("error")
    driver.pipe("words", {"word": "ok"}, key="ok")  # the task goes on
    assert driver.values("word_counts") == [{"word": "ok", "count": 2}]


def test_an_input_above_max_input_bytes_is_dead_lettered_undecoded(drive) -> None:
    driver = drive(counter_app(max_input_bytes=64))
    driver.pipe("words", {"word": "x" * 100})
    driver.pipe("words", {"word": "y"})
    assert reasons(driver)[0][0] == "too_large"
    assert driver.table() == {"y": 2}


# ---- stores -------------------------------------------------------------------------------------


class Dedup(Processor):
    """Two stores on one changelog: the last value per key (default store) and the ids seen (store "seen")."""

    def stores(self) -> list[StoreSpec]:
        return [StoreSpec(), StoreSpec(name="seen")]

    def process(self, record: Any, context: ProcessorContext) -> None:
        seen = context.state("seen")
        if record.get("delete"):
            context.state().delete(record["key"])
            return
        if seen.get(record["id"]) is not None:
            return
        seen.put(record["id"], True)
        context.state().put(record["key"], record["value"])
        context.send("latest", record["value"], key=record["key"])


def dedup_app() -> Any:
    app = make_app(stream_processors={"dedup": {"input_topics": ["in"], "output_topics": ["latest"]}})
    app.processor("dedup")(Dedup)
    return app


def test_named_stores_share_one_changelog_with_prefixed_keys(drive) -> None:
    driver = drive(dedup_app())
    driver.pipe("in", {"id": "1", "key": "k", "value": 10})
    driver.pipe("in", {"id": "1", "key": "k", "value": 99})  # a re-sent id: dropped
    driver.pipe("in", {"id": "2", "key": "k", "value": 11})
    assert driver.values("latest") == [10, 11]
    assert driver.table() == {"k": 11}
    assert driver.table("seen") == {"1": True, "2": True}
    keys = sorted({r.key for r in driver.changelog("dedup")})
    assert keys == [b"\x01seen\x001", b"\x01seen\x002", b"k"]
    driver.restart()
    driver.pipe("in", {"id": "2", "key": "k", "value": 12})  # still known after the restore
    assert driver.values("latest") == []
    assert driver.table("seen") == {"1": True, "2": True}


def test_delete_writes_a_tombstone_and_the_key_stays_gone_after_restart(drive) -> None:
    driver = drive(dedup_app())
    driver.pipe("in", {"id": "1", "key": "k", "value": 10})
    driver.pipe("in", {"delete": True, "key": "k"})
    last = driver.changelog("dedup")[-1]
    assert (last.key, last.value) == (b"k", None)
    driver.restart()
    driver.pipe("in", {"id": "3", "key": "other", "value": 1})
    assert driver.table() == {"other": 1}


def test_an_undeclared_store_is_a_key_error(drive) -> None:
    class Undeclared(Processor):
        def process(self, record: Any, context: ProcessorContext) -> None:
            context.state("nope").put("k", 1)

    app = make_app(stream_processors={"u": {"input_topics": ["in"]}})
    app.processor("u")(Undeclared)
    driver = drive(app)
    driver.pipe("in", 1)
    assert reasons(driver)[0][0] == "processing_error"
    assert "KeyError('nope')" in driver.dead_letters()[0].header("error")


# ---- punctuation --------------------------------------------------------------------------------


class Ticker(Processor):
    """Stream-time punctuation every second of event time (the record's ``t``); each fire counts in the state."""

    @staticmethod
    def event_time(record: Any) -> int:
        return record["t"]

    def init(self, context: ProcessorContext) -> None:
        def fire(now: int) -> None:
            fired = (context.state().get("fired") or 0) + 1
            context.state().put("fired", fired)
            context.send("ticks", {"now": now, "after": context.offset, "fired": fired})

        context.schedule(1000, PunctuationType.STREAM_TIME, fire)

    def process(self, record: Any, context: ProcessorContext) -> None:
        pass


TICK_TIMES = [500, 1500, 1700, 1600, 2100, 3500, 3600, 4000]


def ticker_run(drive: Any, restart_after: int | None) -> list[Any]:
    app = make_app(stream_processors={"ticker": {"input_topics": ["in"], "output_topics": ["ticks"]}})
    app.processor("ticker")(Ticker)
    driver = drive(app)
    for i, t in enumerate(TICK_TIMES):
        driver.pipe("in", {"t": t}, timestamp=1)  # event time, not the Kafka timestamp, drives stream time
        if i == restart_after:
            driver.restart()
    return driver.values("ticks")


def test_stream_time_punctuation_fires_when_stream_time_passes_each_multiple(drive) -> None:
    ticks = ticker_run(drive, None)
    # 1500 passes 1000; 1700 and 1600 (late) pass nothing; 2100 passes 2000; 3500 passes 3000 (once, not twice);
    # 4000 reaches 4000.
    assert ticks == [{"now": 1500, "after": 1, "fired": 1}, {"now": 2100, "after": 4, "fired": 2},
                     {"now": 3500, "after": 5, "fired": 3}, {"now": 4000, "after": 7, "fired": 4}]


@pytest.mark.parametrize("restart_after", [0, 1, 2, 3, 4, 5, 6])
def test_stream_time_punctuation_fires_at_the_same_records_after_a_restart(drive, restart_after: int) -> None:
    assert ticker_run(drive, restart_after) == ticker_run(drive, None)


def test_wall_clock_punctuation_fires_as_the_driver_clock_advances(drive) -> None:
    class Beat(Processor):
        def init(self, context: ProcessorContext) -> None:
            def beat(now: int) -> None:
                n = (context.state().get("n") or 0) + 1
                context.state().put("n", n)
                context.send("beats", {"now": now, "n": n, "offset": context.offset})

            self.punctuator = context.schedule(1000, PunctuationType.WALL_CLOCK, beat)

        def process(self, record: Any, context: ProcessorContext) -> None:
            if record.get("stop"):
                self.punctuator.cancel()

    app = make_app(stream_processors={"beat": {"input_topics": ["in"], "output_topics": ["beats"]}})
    app.processor("beat")(Beat)
    driver = drive(app, start_ms=0)
    driver.pipe("in", {"go": 1})  # opens the task at 0: first beat due at 1000
    driver.advance_time(999)
    assert driver.values("beats") == []
    driver.advance_time(1)
    assert driver.values("beats") == [{"now": 1000, "n": 1, "offset": None}]
    driver.advance_time(5000)  # once per check, not once per interval missed
    assert driver.values("beats") == [{"now": 6000, "n": 2, "offset": None}]
    assert [(r.key, r.value, r.timestamp) for r in driver.changelog("beat")] == [(b"n", b"1", 1000),
                                                                                  (b"n", b"2", 6000)]
    driver.pipe("in", {"stop": 1})
    driver.advance_time(10_000)
    assert driver.values("beats") == []


def test_schedule_refuses_a_non_positive_interval(drive) -> None:
    class Bad(Processor):
        def init(self, context: ProcessorContext) -> None:
            context.schedule(0, PunctuationType.STREAM_TIME, lambda now: None)

        def process(self, record: Any, context: ProcessorContext) -> None:
            pass

    app = make_app(stream_processors={"bad": {"input_topics": ["in"]}})
    app.processor("bad")(Bad)
    with pytest.raises(ValueError, match="must be positive"):  # raised as the tasks open, as on assignment
        drive(app)


def test_output_values_are_encoded_like_context_send_says(drive) -> None:
    class Kinds(Processor):
        def process(self, record: Any, context: ProcessorContext) -> None:
            for value in (b"raw", "text", None, {"a": [1, 2]}, 3.5):
                context.send("out", value, key={"k": 1})

    app = make_app(stream_processors={"kinds": {"input_topics": ["in"], "output_topics": ["out"]}})
    app.processor("kinds")(Kinds)
    driver = drive(app)
    driver.pipe("in", 1)
    records = driver.read("out")
    assert [r.value for r in records] == [b"raw", b"text", None, orjson.dumps({"a": [1, 2]}), b"3.5"]
    assert {r.key for r in records} == {b'{"k":1}'}
