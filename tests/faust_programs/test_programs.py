"""Every faust-streaming example program, with only its import lines changed, gives Faust's results here.

Each program runs under faust-streaming 0.15.3's own ``agent.test_context()`` and under this engine's TestDriver on
the same input (:mod:`tests.faust_programs.scenarios`), and what it sent, its tables at the end, the module-level
state it keeps and what it printed must be equal (:mod:`tests.faust_programs.harness`). :data:`BEFORE` marks the
programs that do not yet run or give other results here, each with today's error; :data:`EXCLUDED` lists the
examples that are not run at all, and why.
"""

from __future__ import annotations

import asyncio

import pytest

from .harness import Outcome, run_faust, run_ours
from .scenarios import SCENARIOS

#: Examples of faust-streaming's examples/ that are not compared, and why (each checked in test_sources.py).
EXCLUDED = {
    "tz_aware": "fails under faust-streaming 0.15.3 itself: `@app.crontab('16 20 * * *', tz=pacific, ...)`: TypeError: "
                "App.crontab() got an unexpected keyword argument 'tz' (0.15.3's is `timezone=`)",
    "isolated_partitions_crashing": "fails under faust-streaming 0.15.3's test_context: its agent asserts "
                                    "`event.message.tp in withdrawals.active_partitions`, None without a consumer "
                                    "assignment (TypeError); isolated_partitions needs a broker (the broker form)",
    "rpc": "fails under faust-streaming 0.15.3's test_context: `pow.join`/`mul.ask` wait for replies through a reply "
           "topic and its consumer: KafkaConnectionError (needs a broker); agent.ask is not offered here (README)",
    "livecheck": "needs a Redis server (`cache='redis://localhost:6379'`; aredis is not installed) and faust's "
                 "LiveCheck service and web blueprints: a test harness of a deployment, not a stream program",
    "fastapi_example": "needs FastAPI (`from fastapi import FastAPI`: not installed, not a dependency of either "
                       "framework) and `faust.contrib.asgi`; its stream part is hello_world's",
    "concurrency": "its agents GET http://www.google.com (the internet) with `concurrency=200`, and its __main__ only "
                   "produces; concurrency > 1 is refused here by design (README: one instance per partition)",
    "django": "a Django project (examples/django/: settings, models, manage.py), not a program",
    "fastapi_project": "a FastAPI project (examples/fastapi_project/), needs FastAPI",
    "kubernetes_producer": "a plain aiokafka producer (no faust): its records are kubernetes_consumer's input",
}

#: Programs that do not run here yet, or give other results: the reason today (the lead flips them as the engine
#: work lands: G App arguments/CLI/on_leader, H tables/windows, I serializers/Records, J agents/streams/channels).
BEFORE: dict[str, str] = {
}


def _params() -> list[object]:
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=BEFORE[name])) if name in BEFORE
            else name for name in SCENARIOS if name not in EXCLUDED]


def faust_outcome(name: str, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    return asyncio.run(asyncio.wait_for(run_faust(name, SCENARIOS[name](), monkeypatch), timeout=120))


@pytest.mark.parametrize("name", _params())
def test_program_gives_fausts_results(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = SCENARIOS[name]()
    faust_run = faust_outcome(name, monkeypatch)
    ours = run_ours(name, scenario, monkeypatch)
    assert ours.records == faust_run.records  # key and value bytes of each compared topic, in send order
    assert ours.tables == faust_run.tables
    assert ours.state == faust_run.state
    assert scenario.compared_prints(ours.printed) == scenario.compared_prints(faust_run.printed)
