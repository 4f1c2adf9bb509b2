"""The input each program is given (deterministic, the kind of data the program was written for) and what is compared.

Values are the bytes a Faust producer writes (JSON for Records and ``value_type=str``: faust-streaming's default
``value_serializer`` is ``json``; keys raw UTF-8: its default ``key_serializer`` is ``raw``). Times are ms since
the epoch, UTC; :data:`~tests.faust_programs.harness.START_MS` is the wall clock at the start.
"""

from __future__ import annotations

import random
import re
import types
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from .harness import START_MS, Call, Put, Scenario

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "runs"]


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _seeded(seed: int) -> Any:
    def setup(module: types.ModuleType) -> None:
        random.seed(seed)  # the program's own random draws (a timer's values), the same in both runs

    return setup


def hello_world() -> Scenario:
    """The timer ``produce`` once (its 100 greetings), which the agent prints."""
    return Scenario([Call("produce")], topics=("greetings_topic",), prints=True)


def word_count() -> Scenario:
    """40 posts of 3-9 words; ``shuffle_words`` sends each word to ``count_words`` (an agent without a topic)."""
    rng = random.Random(1)
    posts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(40)]
    steps: list[Put | Call] = [Put("posts_topic", _json(p), timestamp_ms=START_MS + 500 * i) for i, p in
                               enumerate(posts)]
    return Scenario(steps, topics=("count_words",), tables=("word_counts",), state=("last_count",))


def _withdrawals(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` withdrawals as examples/withdrawals.py's generate_withdrawals_dict makes them (5 countries, 90% in
    country_0; 12 users instead of 500, so that users repeat in a short input), seeded, 700 ms apart from
    ``START_MS``, their ``date`` the same instant."""
    rng = random.Random(seed)
    countries = [f"country_{i}" for i in range(5)]
    users = [f"user_{i}" for i in range(12)]
    out = []
    for i in range(n):
        ms = START_MS + 700 * i
        out.append({"user": rng.choice(users), "amount": round(rng.uniform(0, 25_000), 2),
                    "country": rng.choices(countries, [0.9] + [0.1 / 5] * 4)[0], "date": _iso(ms), "ms": ms})
    return out


def withdrawals() -> Scenario:
    """60 withdrawals (42 s) to the topic, keyed by user as the program's ``produce`` command sends them; the same
    records sent to ``track_country_withdrawal`` (an agent without a topic, its ``group_by(Withdrawal.country)``
    through a repartition topic)."""
    steps: list[Put | Call] = []
    for w in _withdrawals(60, 5):
        ms = w.pop("ms")
        steps.append(Put("withdrawals_topic", _json(w), key=w["user"].encode(), timestamp_ms=ms))
        # As ``track_country_withdrawal.send(value=withdrawal)`` writes it: the agent has no value_type, so the
        # record is revived from Faust's ``__faust`` namespace (the Record's module and name).
        sent = {**w, "__faust": {"ns": "faust_programs_withdrawals.Withdrawal"}}
        steps.append(Put("track_country_withdrawal", _json(sent), key=w["user"].encode(), timestamp_ms=ms))
    return Scenario(steps, tables=("user_to_total", "country_to_total"))


def tabletest() -> Scenario:
    """The program's ``produce`` command's records (value i to each of the 4 partitions, keyed by the partition
    number), for i < 25; then its timer ``dump_count`` (prints the table)."""
    steps: list[Put | Call] = [Put("source_topic", _json(i), key=str(j).encode(), partition=j,
                                   timestamp_ms=START_MS + 100 * i) for i in range(25) for j in range(4)]
    steps.append(Call("dump_count", at_ms=START_MS + 10_000))
    return Scenario(steps, tables=("counts",), state=("seen",), prints=True)


def tableofset() -> Scenario:
    """People joining and leaving locations (the ``joining``/``leaving`` commands' records), then the timer
    ``_dump`` (prints the table)."""
    rng = random.Random(3)
    people = ["ann", "bob", "cho", "dee", "eve", "fay"]
    places = ["oslo", "lima", "kyiv"]
    steps: list[Put | Call] = []
    for i in range(30):
        topic = "joining_topic" if i < 8 or rng.random() < 0.6 else "leaving_topic"
        steps.append(Put(topic, _json(rng.choice(people)), key=rng.choice(places).encode(),
                         timestamp_ms=START_MS + 1000 * i))
    steps.append(Call("_dump", at_ms=START_MS + 40_000))
    return Scenario(steps, tables=("table",), prints=True, printed_as=_by_place)


def _by_place(lines: list[str]) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
    """tableofset's prints as compared: each record's two lines (``- Ann joined oslo``, ``TABLE CUR: {...}``) by
    its place, in order (a place is a key: one partition, whose records Faust processes in order); the timer's
    dump with its rows sorted (Faust draws a worker's table in the order its keys were first written, across
    partitions; here partition by partition). Two places' records interleave as the partitions' turns come: not
    defined by Faust either (under test_context, in put order)."""
    places: dict[str, list[tuple[str, str]]] = {}
    rest: list[str] = []
    i = 0
    while i < len(lines):
        record = re.fullmatch(r"- \w+ (?:joined|left) (\w+)", lines[i])
        if record and i + 1 < len(lines):
            places.setdefault(record.group(1), []).append((lines[i], lines[i + 1]))
            i += 2
            continue
        rest.append(lines[i])
        i += 1
    return places, sorted(rest)


def task_queue() -> Scenario:
    """10 ``add`` requests (the Request records ``add.delay`` sends), then the timer ``_send_tasks`` once (a random
    request with a uuid id: masked)."""
    steps: list[Put | Call] = [
        Put("task_queue_topic", _json({"id": f"req-{i}", "name": "faust_programs_task_queue.add",
                                       "arguments": [i, i * i], "keyword_arguments": {}}),
            timestamp_ms=START_MS + 1000 * i) for i in range(10)]
    steps.append(Call("_send_tasks", at_ms=START_MS + 11_000))
    return Scenario(steps, prints=True, masks=(UUID,), setup=_seeded(11))


def _readings(window_s: int, counts: list[int]) -> list[dict[str, Any]]:
    """Readings whose ``date`` (int seconds, as the program's timer makes it) fall ``counts[i]`` into window i."""
    base = (START_MS // 1000) // window_s * window_s
    out = []
    for w, n in enumerate(counts):
        for j in range(n):
            out.append({"date": base + w * window_s + j * (window_s // max(n, 1)), "value": round(0.1 * (w + j), 3)})
    return out


def windowed_aggregation() -> Scenario:
    """12 readings in 10 s windows of their ``date`` field (4/3/3/2), then the clock 60 s on and a table cleanup:
    ``on_window_close`` sends each closed window's count and mean to the sink."""
    readings = _readings(10, [4, 3, 3, 2])
    steps: list[Put | Call] = [Put("source", _json(r), timestamp_ms=r["date"] * 1000) for r in readings]
    end = readings[-1]["date"] * 1000 + 60_000

    return Scenario(steps, topics=("sink",), tables=("tumbling_table",), prints=True,
                    faust_after=lambda m: _cleanup_at(m, "tumbling_table", end),
                    ours_after=lambda m, d: d.advance_time(end - d.now_ms))


async def _cleanup_at(module: types.ModuleType, name: str, at_ms: int) -> None:
    """Faust's table cleanup at ``at_ms`` on the wall clock (``Table._del_old_keys``, which the worker runs every
    ``table_cleanup_interval``): it fires ``on_window_close`` for the windows that expired."""
    import time as _time

    pinned = _time.time
    _time.time = lambda: at_ms / 1000  # the cleanup at ``at_ms`` on the wall clock
    try:
        await getattr(module, name).table._del_old_keys()  # noqa: SLF001 - what faust's cleanup timer calls
    finally:
        _time.time = pinned


def hopping_2() -> Scenario:
    """20 readings in 3 s steps of 6 s hopping windows of their ``date``, then a cleanup 70 s on."""
    readings = _readings(3, [3, 2, 4, 1, 3, 2, 3, 2])
    steps: list[Put | Call] = [Put("source", _json(r), timestamp_ms=r["date"] * 1000) for r in readings]
    end = readings[-1]["date"] * 1000 + 70_000
    return Scenario(steps, tables=("hopping_table",), prints=True,
                    faust_after=lambda m: _cleanup_at(m, "hopping_table", end),
                    ours_after=lambda m, d: d.advance_time(end - d.now_ms))


def _every_2s(topic: str, timer: str) -> list[Put | Call]:
    """15 live events 2 s apart (event time = wall clock), then the same 15 replayed an hour later (event times an
    hour behind the clock), then the timer once."""
    rng = random.Random(9)
    steps: list[Put | Call] = []
    for i in range(15):
        steps.append(Put(topic, _json({"random": round(rng.random(), 2)}), timestamp_ms=START_MS + 2000 * i))
    later = START_MS + 3_600_000
    for i in range(15):
        steps.append(Put(topic, _json({"random": round(rng.random(), 2)}), timestamp_ms=START_MS + 2000 * i,
                         clock_ms=later + 2000 * i))
    steps.append(Call(timer, at_ms=later + 40_000))
    return steps


def hopping() -> Scenario:
    """See :func:`_every_2s`: what the agent prints (``now()``, ``current()``, ``value()``, ``delta(30)``) and the
    table after Faust's table cleanup at the end (expired windows go then: a worker runs it every 30 s)."""
    end = START_MS + 3_600_000 + 40_000
    return Scenario(_every_2s("hopping_topic", "publish_every_2secs"), tables=("hopping_table",), prints=True,
                    setup=_seeded(2), faust_after=lambda m: _cleanup_at(m, "hopping_table", end),
                    ours_after=lambda m, d: d.advance_time(end - d.now_ms))


def tumbling() -> Scenario:
    """As :func:`hopping`, tumbling windows."""
    end = START_MS + 3_600_000 + 40_000
    return Scenario(_every_2s("tumbling_topic", "publish_every_2secs"), tables=("tumbling_table",), prints=True,
                    setup=_seeded(2), faust_after=lambda m: _cleanup_at(m, "tumbling_table", end),
                    ours_after=lambda m, d: d.advance_time(end - d.now_ms))


def leader() -> Scenario:
    """The leader timer ``publish_greetings`` 5 times, 2 s apart (raw values to the agent ``say``, printed)."""
    steps: list[Put | Call] = [Call("publish_greetings", at_ms=START_MS + 2000 * i) for i in range(5)]
    return Scenario(steps, topics=("say",), prints=True, setup=_seeded(4))


class LogRecorder(dict[str, list[str]]):
    """A ``logging.Logger`` stand-in that keeps what it was given (bound_agent.py logs its outputs), by the agent
    that logged it (the line's ``[stage1]``, ``[stage2]`` or ``[dead letter]`` tag): each agent's lines in its
    order. How two agents' lines interleave is not compared: three agents run as three tasks, under Faust too,
    whose turns are the event loop's (and, on a worker, the fetches')."""

    def _add(self, level: str, msg: str, args: tuple[Any, ...]) -> None:
        line = msg % args if args else msg
        tag = line[line.find("[") + 1:line.find("]")] if "[" in line else ""
        self.setdefault(tag, []).append(f"{level} {line}")

    def info(self, msg: str, *args: Any) -> None:
        self._add("INFO", msg, args)

    def error(self, msg: str, *args: Any) -> None:
        self._add("ERROR", msg, args)


def _bound_setup(module: types.ModuleType) -> None:
    random.seed(6)
    module.logger = LogRecorder()
    module.app.main = lambda *args, **kwargs: None  # the program's main() ends by running the worker
    module.main()


def _agent_input(module: types.ModuleType, agent: str) -> Any:
    found = module.app.agents[agent]
    return getattr(found, "channel", None) or found.topics[0]


def bound_agent() -> Scenario:
    """Its timer (a ``partial`` of ``action_generator`` over the first channel) at three wall-clock seconds: one
    where stage 1 fails (``now % 3 == 0``), one where stage 2 fails (``== 1``), one where neither does; what the
    stages and the dead-letter agent log is compared. The program's draw (``randint``) is seeded right before each
    call: faust-streaming itself draws from the global ``random`` between the program's start and its timer."""

    def generate(seed: int) -> Callable[[types.ModuleType], Any]:
        def call(module: types.ModuleType) -> Any:
            random.seed(seed)
            return module.action_generator(_agent_input(module, "stage1-agent"))

        return call

    steps: list[Put | Call] = [Call("action_generator", at_ms=START_MS + 1000 * s, fun=generate(60 + s))
                               for s in (0, 1, 2)]
    return Scenario(steps, state=("logger",), setup=_bound_setup)


def _crontab(topic: str, crontab: str) -> Scenario:
    rng = random.Random(8)
    steps: list[Put | Call] = [Put(topic, _json({"random": round(rng.random(), 2)}), timestamp_ms=START_MS + 1000 * i)
                               for i in range(5)]
    steps.append(Call(crontab, at_ms=START_MS + 60_000))
    return Scenario(steps, topics=(topic,), prints=True, masks=(r"Sending message at: .*",), setup=_seeded(8))


def tz_aware() -> Scenario:
    """5 records to the topic (printed by the agent), then the crontab's function once (its send printed too)."""
    return _crontab("tz_aware_topic", "publish_at_8_20_pm_pacific")


def tz_unaware() -> Scenario:
    """As :func:`tz_aware`."""
    return _crontab("tz_unaware_topic", "publish_every_minute")


def isolated_partitions_crashing() -> Scenario:
    """60 withdrawals keyed by user (the ``produce`` command's records)."""
    steps: list[Put | Call] = []
    for w in _withdrawals(60, 7):
        ms = w.pop("ms")
        steps.append(Put("withdrawals_topic", _json(w), key=w["user"].encode(), timestamp_ms=ms))
    return Scenario(steps, tables=("withdrawal_counts",), state=("seen_events",))


def service() -> Scenario:
    """The timer ``producer`` 3 times (``consumer.send('hello')``, printed by the agent)."""
    return Scenario([Call("producer", at_ms=START_MS + 1000 * i) for i in range(3)], topics=("consumer",),
                    prints=True)


def kubernetes_consumer() -> Scenario:
    """The producer's 40 Score records (key ``score``), regrouped by ``index % 2``."""
    rng = random.Random(10)
    steps: list[Put | Call] = [Put("test_topic", _json({"index": i, "value": round(rng.random(), 2)}), key=b"score",
                                   timestamp_ms=START_MS + 100 * i) for i in range(40)]
    return Scenario(steps, tables=("table",), prints=True)


def page_views() -> Scenario:
    """80 page views of 6 pages by 10 users, regrouped by page id."""
    rng = random.Random(12)
    steps: list[Put | Call] = [
        Put("page_view_topic", _json({"id": f"page-{rng.randint(1, 6)}", "user": f"user-{rng.randint(1, 10)}"}),
            key=f"user-{i % 10}".encode(), timestamp_ms=START_MS + 250 * i) for i in range(80)]
    return Scenario(steps, tables=("page_views",))


def rpc() -> Scenario:
    """The timer ``_sender`` once (``pow.join`` and ``pow.map`` over 7 values: ``ask`` round trips)."""
    return Scenario([Call("_sender")], prints=True)


SCENARIOS = {f.__name__: f for f in (
    hello_world, word_count, withdrawals, tabletest, tableofset, task_queue, windowed_aggregation, hopping,
    hopping_2, tumbling, leader, bound_agent, tz_aware, tz_unaware, isolated_partitions_crashing, service,
    kubernetes_consumer, page_views, rpc)}
