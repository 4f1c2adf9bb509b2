"""A real faust-streaming worker and ours read each other's topics on the broker.

For each value type (``str``, ``bytes`` with the raw serializer, ``int``, and a Record with a nested Record, a list
of them and a datetime field): our agent forwards the seed values to a topic a Faust agent (``faust -A <module>
worker``, faust-streaming 0.15.3, in a subprocess) reads and forwards to a topic our second agent reads and forwards
again. The values that come out at the end equal the ones put in, in order; and each hop's bytes decode, with the
other side's codec, to those values.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from faust.serializers.registry import Registry

from stream_processor import App, Record
from stream_processor.engine.topics import ensure_topics, required_topics
from stream_processor.engine.worker import Worker
from tests.broker import free_port
from tests.helpers import isolated_settings, read_topic, wait_for

UTC = datetime.UTC
TYPES = ("str", "bytes", "int", "rec")


class Line(Record, namespace="wire.it.Line", isodates=True):
    sku: str
    qty: int
    at: datetime.datetime


class Order(Record, namespace="wire.it.Order", isodates=True):
    id: str
    line: Line
    lines: list[Line]
    placed: datetime.datetime
    note: str | None = None


# The Faust program: one agent per type forwards ours-> topic to the faust-> topic. Its Records carry the same
# namespaces as ours.
FAUST_APP = '''
import datetime
import os
from typing import List, Optional

import faust

RUN = os.environ["WIRE_RUN"]
app = faust.App(f"wire-faust-{RUN}", broker="kafka://" + os.environ["WIRE_BROKER"], store="memory://",
                web_port=int(os.environ["WIRE_WEB_PORT"]), web_host="127.0.0.1", topic_partitions=1)


class Line(faust.Record, namespace="wire.it.Line", isodates=True):
    sku: str
    qty: int
    at: datetime.datetime


class Order(faust.Record, namespace="wire.it.Order", isodates=True):
    id: str
    line: Line
    lines: List[Line]
    placed: datetime.datetime
    note: Optional[str] = None


def forward(kind, value_type, **serializers):
    source = app.topic(f"wire-ours-{kind}-{RUN}", value_type=value_type, **serializers)
    sink = app.topic(f"wire-faust-{kind}-{RUN}", value_type=value_type, **serializers)

    @app.agent(source, name=f"forward_{kind}")
    async def forward_agent(stream):
        async for value in stream:
            if isinstance(value, Order):  # a real Order, nested records and datetimes included
                assert isinstance(value.line, Line) and isinstance(value.lines[0].at, datetime.datetime), value
            await sink.send(value=value)


forward("str", str)
forward("bytes", bytes, value_serializer="raw")
forward("int", int)
forward("rec", Order)
'''


def _values() -> dict[str, list[Any]]:
    t0 = datetime.datetime(2024, 8, 8, 12, 0, tzinfo=UTC)
    orders = []
    for i in range(5):
        lines = [Line(f"sku{j}", j + i, t0 + datetime.timedelta(seconds=j, microseconds=i)) for j in range(1, 3)]
        orders.append(Order(f"o{i}", lines[0], lines, t0 + datetime.timedelta(minutes=i), None if i % 2 else "n"))
    return {"str": ["héllo", "", '{"not": "an object"}', "42", "bye"],
            "bytes": [b"\x00\xff", b"plain", b'"json"', b"", b"\x80"],
            "int": [0, -1, 42, 2**40, 7],
            "rec": orders}


def our_app(bootstrap: str, run: str) -> tuple[App, dict[str, Any]]:
    """Our side: ``fwd_<kind>`` seed -> ours topic, ``back_<kind>`` faust topic -> final topic."""
    base = isolated_settings(bootstrap).model_dump()
    names = {f"{stage}-{kind}": f"wire-{stage}-{kind}-{run}" for stage in ("seed", "ours", "faust", "final")
             for kind in TYPES}
    app = App(f"wire-{run}", settings={"kafka": base["kafka"], "monitoring": base["monitoring"],
                                       "topics": {name: {"partitions": 1} for name in names.values()}})
    types = {"str": str, "bytes": bytes, "int": int, "rec": Order}
    topics = {}
    for key, name in names.items():
        kind = key.split("-")[1]
        topics[key] = topic = app.topic(name, value_type=types[kind])
        if kind == "bytes":
            topic.value_serializer = "raw"  # App.topic(..., value_serializer="raw") once app.py passes it on
    for kind in TYPES:
        _forward(app, f"fwd_{kind}", topics[f"seed-{kind}"], topics[f"ours-{kind}"])
        _forward(app, f"back_{kind}", topics[f"faust-{kind}"], topics[f"final-{kind}"])
    return app, topics


def _forward(app: App, name: str, source: Any, sink: Any) -> None:
    async def forward(stream: Any) -> Any:
        async for value in stream:
            yield value

    forward.__name__ = name
    app.agent(source, name=name, sink=[sink])(forward)


def start_faust(bootstrap: str, run: str, folder: Path) -> subprocess.Popen[bytes]:
    (folder / "wire_faust_app.py").write_text(textwrap.dedent(FAUST_APP))
    env = {**os.environ, "WIRE_RUN": run, "WIRE_BROKER": bootstrap, "WIRE_WEB_PORT": str(free_port()),
           "PYTHONPATH": str(folder)}
    faust_cli = str(Path(sys.executable).with_name("faust"))
    return subprocess.Popen([faust_cli, "-A", "wire_faust_app", "worker", "-l", "info"], cwd=folder, env=env,
                            stdout=(folder / "faust.log").open("wb"), stderr=subprocess.STDOUT)


async def seed(bootstrap: str, topics: dict[str, Any], values: dict[str, list[Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for kind in TYPES:
            topic = topics[f"seed-{kind}"]
            for i, value in enumerate(values[kind]):
                await producer.send(topic.name, topic.encode_value(value), key=f"k{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()


async def test_a_faust_worker_and_ours_read_each_others_topics(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    app, topics = our_app(kafka_bootstrap, run)
    await ensure_topics(app.settings, required_topics(app.settings))
    values = _values()
    await seed(kafka_bootstrap, topics, values)
    faust_worker = start_faust(kafka_bootstrap, run, tmp_path)
    worker = Worker(app.settings, app=app)
    task = asyncio.create_task(worker.run())
    try:
        async def all_back() -> bool:
            assert not task.done(), task.exception()
            assert faust_worker.poll() is None, (tmp_path / "faust.log").read_text()[-3000:]
            counts = [len(await read_topic(kafka_bootstrap, topics[f"final-{k}"].name)) for k in TYPES]
            return counts == [len(values[k]) for k in TYPES]

        await wait_for(all_back, timeout=180, interval=1.0,
                       message=lambda: "every value back through faust; faust log tail:\n"
                       + (tmp_path / "faust.log").read_text()[-3000:])
    finally:
        worker.request_stop()
        faust_worker.terminate()
        await asyncio.wait_for(task, timeout=30)
        await asyncio.to_thread(faust_worker.wait, 30)
    registry = Registry(key_serializer="raw", value_serializer="json")
    faust_types = {"str": str, "bytes": bytes, "int": int, "rec": None}
    for kind in TYPES:
        final = topics[f"final-{kind}"]
        back = [final.decode_value(r.value, r.key, r.timestamp) for r in await read_topic(kafka_bootstrap, final.name)]
        assert back == values[kind], kind
        if kind == "rec":
            assert all(type(o) is Order and type(o.lines[1]) is Line and o.placed.tzinfo is not None for o in back)
        # each hop decoded with the other side's codec
        serializer = "raw" if kind == "bytes" else None
        ours_wrote = [r.value for r in await read_topic(kafka_bootstrap, topics[f"ours-{kind}"].name)]
        faust_wrote = [r.value for r in await read_topic(kafka_bootstrap, topics[f"faust-{kind}"].name,
                                                         "read_uncommitted")]
        assert ours_wrote == faust_wrote, kind  # the same bytes both ways
        if kind != "rec":
            assert [registry.loads_value(faust_types[kind], v, serializer=serializer) for v in ours_wrote] \
                == values[kind]
