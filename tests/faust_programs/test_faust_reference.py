"""The reference runs are worth comparing with: under faust-streaming 0.15.3 each program does what it says, on
its input, as recomputed here without any framework (what :mod:`test_programs` compares is not an empty run)."""

from __future__ import annotations

import pytest

from .harness import Put, plain
from .scenarios import SCENARIOS
from .test_programs import faust_outcome


def _inputs(name: str, target: str) -> list[Put]:
    return [s for s in SCENARIOS[name]().steps if isinstance(s, Put) and s.target == target]


def _values(name: str, target: str) -> list[object]:
    import orjson

    return [orjson.loads(p.value) for p in _inputs(name, target) if p.value is not None]


def test_hello_world(monkeypatch: pytest.MonkeyPatch) -> None:
    run = faust_outcome("hello_world", monkeypatch)
    assert run.printed == [f"hello {i}" for i in range(100)]
    assert run.records["greetings_topic"] == [(None, f'"hello {i}"'.encode()) for i in range(100)]


def test_word_count(monkeypatch: pytest.MonkeyPatch) -> None:
    run = faust_outcome("word_count", monkeypatch)
    words = [w for post in _values("word_count", "posts_topic") for w in str(post).split()]
    expected = {w: words.count(w) for w in set(words)}
    assert run.tables["word_counts"] == expected
    assert {w: c for w, c in run.state["last_count"].items() if c} == expected
    assert run.records["count_words"] == [(w.encode(), f'"{w}"'.encode()) for w in words]


def test_withdrawals(monkeypatch: pytest.MonkeyPatch) -> None:
    run = faust_outcome("withdrawals", monkeypatch)
    given = _values("withdrawals", "withdrawals_topic")
    per_user: dict[str, float] = {}
    for w in given:
        per_user[w["user"]] = per_user.get(w["user"], 0) + w["amount"]
    hour = {key: value for (key, _window), value in run.tables["user_to_total"].items()}
    assert hour == pytest.approx(per_user)  # the 42 s of input fall in one hour window
    countries = run.tables["country_to_total"]
    assert sum(countries.values()) == pytest.approx(sum(w["amount"] for w in given))
    assert all(abs(end - start - 9.9) < 1e-6 for _key, (start, end) in countries)  # Faust's [start, end - 0.1]


def test_tabletest(monkeypatch: pytest.MonkeyPatch) -> None:
    run = faust_outcome("tabletest", monkeypatch)
    assert run.tables["counts"] == {str(j): sum(range(25)) for j in range(4)}
    assert run.state["seen"] == {str(j): 24 for j in range(4)}
    assert "| 0         | 300   |" in run.printed


def test_tableofset(monkeypatch: pytest.MonkeyPatch) -> None:
    run = faust_outcome("tableofset", monkeypatch)
    import orjson

    expected: dict[str, set[str]] = {}
    for step in SCENARIOS["tableofset"]().steps:
        if isinstance(step, Put):
            people = expected.setdefault(step.key.decode(), set())
            name = orjson.loads(step.value)
            people.add(name) if step.target == "joining_topic" else people.discard(name)
    assert run.tables["table"] == plain(expected)


def test_task_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    run = faust_outcome("task_queue", monkeypatch)
    assert [line for line in run.printed if line.startswith("Result of req-")] == [
        f"Result of req-{i} is: {i + i * i}" for i in range(10)]
    assert run.printed[-1].startswith("Result of <masked> is: ")  # the timer's own request


def test_windowed_aggregation_closes_each_window(monkeypatch: pytest.MonkeyPatch) -> None:
    run = faust_outcome("windowed_aggregation", monkeypatch)
    import orjson

    closed = [orjson.loads(v) for _k, v in run.records["sink"]]
    assert [c["count"] for c in closed] == [4, 3, 3, 2]
    assert run.tables["tumbling_table"] == {}  # closed windows are gone


def test_tumbling_and_hopping_count_per_window(monkeypatch: pytest.MonkeyPatch) -> None:
    tumbling = faust_outcome("tumbling", monkeypatch)
    assert sorted(tumbling.tables["tumbling_table"].values()) == [1]  # the older windows expired at the cleanup
    current = [int(line.rsplit(" ", 1)[1]) for line in tumbling.printed if line.startswith("current()")]
    # live: 5 events per 10 s window; replayed an hour later into the same (not yet cleaned) windows: 6..10
    assert current == [1, 2, 3, 4, 5] * 3 + [6, 7, 8, 9, 10] * 3 + [1]
    hopping = faust_outcome("hopping", monkeypatch)
    assert sorted(hopping.tables["hopping_table"].values()) == [1, 1]  # the timer's event, in two 10 s windows
    assert len([line for line in hopping.printed if line.startswith("delta(30)")]) == 31


def test_leader_service_and_crontab_send_what_their_timer_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    leader = faust_outcome("leader", monkeypatch)
    assert len(leader.records["say"]) == 5 and leader.printed.count("PUBLISHING ON LEADER!") == 5
    assert [f"b'{v.decode()}'" for _k, v in leader.records["say"]] == [p for p in leader.printed if p.startswith("b'")]
    service = faust_outcome("service", monkeypatch)
    assert service.printed == ["Received: 'hello'"] * 3
    crontab = faust_outcome("tz_unaware", monkeypatch)
    assert len(crontab.records["tz_unaware_topic"]) == 1
    assert len([line for line in crontab.printed if line.startswith("record: ")]) == 6


def test_bound_agent_dead_letters_by_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    log = faust_outcome("bound_agent", monkeypatch).state["logger"]  # each agent's lines, by its tag
    assert set(log) == {"stage1", "stage2", "dead letter"}
    dead = log["dead letter"]
    assert any(line.startswith("ERROR [dead letter] arrived: <DeadLetter: stage='stage1'") for line in dead)
    assert any(line.startswith("ERROR [dead letter] arrived: <DeadLetter: stage='stage2'") for line in dead)
    assert all(line.startswith("INFO [stage2] action arrived") for line in log["stage2"])


def test_group_by_programs(monkeypatch: pytest.MonkeyPatch) -> None:
    scores = faust_outcome("kubernetes_consumer", monkeypatch)
    assert scores.tables["table"] == {"totals": 40, "partition: 0": 20, "partition: 1": 20}
    views = faust_outcome("page_views", monkeypatch)
    pages = [v["id"] for v in _values("page_views", "page_view_topic")]
    assert views.tables["page_views"] == {p: pages.count(p) for p in set(pages)}
