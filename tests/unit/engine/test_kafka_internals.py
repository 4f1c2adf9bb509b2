"""The contract between the engine and aiokafka's internals (stream_processor/engine/kafka_internals.py), no broker.

Each function is run on real aiokafka objects (built inside the running loop, never started), and every attribute
chain it walks is checked for existence and type against aiokafka's own classes, so that an aiokafka version that
moves or retypes one fails here. What only exists with a broker (the group coordinator that ``start()`` makes) is
built the way aiokafka builds it, or checked in aiokafka's source. The type stubs (stubs/aiokafka) are checked
against the installed aiokafka with mypy's stubtest. The last tests hold the rule: no other engine module reads
aiokafka's private attributes or imports its submodules.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import re
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiokafka
import aiokafka.admin
import aiokafka.admin.config_resource
import aiokafka.cluster
import aiokafka.conn
import aiokafka.consumer.fetcher
import aiokafka.coordinator.assignors.abstract
import aiokafka.coordinator.protocol
import aiokafka.helpers
import aiokafka.partitioner
import aiokafka.producer.message_accumulator
import aiokafka.protocol.commit
import aiokafka.structs
import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.consumer.group_coordinator import GroupCoordinator, NoGroupCoordinator
from aiokafka.consumer.subscription_state import Assignment, Subscription, SubscriptionState, TopicPartitionState
from aiokafka.errors import KafkaConnectionError, ProducerFenced
from aiokafka.producer.sender import Sender
from aiokafka.producer.transaction_manager import TransactionManager, TransactionState

from stream_processor.engine import kafka_internals as ki
from stream_processor.engine.assignor import CopartitionedAssignor

ROOT = Path(__file__).resolve().parents[3]
ENGINE = ROOT / "stream_processor" / "engine"
NOWHERE = "127.0.0.1:9"  # never contacted: no client here connects
TP = TopicPartition("t", 0)
OTHER = TopicPartition("t", 1)


def test_the_installed_aiokafka_is_the_pinned_one() -> None:
    pins = re.findall(r"^aiokafka==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert len(pins) == 1, "requirements.txt pins aiokafka exactly once"
    installed = version("aiokafka")
    assert installed == pins[0] == aiokafka.__version__, (
        f"aiokafka {installed} is installed, requirements.txt pins {pins[0]}: kafka_internals.py and stubs/aiokafka "
        "were checked against the pin only. When bumping aiokafka, re-read every function of "
        "stream_processor/engine/kafka_internals.py against the new source, then run this test file.")


# ---- real, unstarted clients ----------------------------------------------------------------------------


@pytest.fixture
async def consumer() -> AsyncIterator[AIOKafkaConsumer]:
    c = AIOKafkaConsumer(bootstrap_servers=NOWHERE, group_id="g", enable_auto_commit=False)
    yield c
    await c.stop()


@pytest.fixture
async def producers() -> AsyncIterator[Callable[..., AIOKafkaProducer]]:
    made: list[AIOKafkaProducer] = []

    def make(**options: Any) -> AIOKafkaProducer:
        made.append(AIOKafkaProducer(bootstrap_servers=NOWHERE, **options))
        return made[-1]

    yield make
    for p in made:
        await p.stop()


def _seek(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
    """What ``consumer.seek`` does (through the fetcher, which only ``start()`` makes)."""
    source = inspect.getsource(aiokafka.consumer.fetcher.Fetcher.seek_to)
    assert "self._subscriptions.seek(tp, offset)" in source, "Fetcher.seek_to no longer seeks the subscription state"
    consumer._subscription.seek(tp, offset)


# ---- consumed_position ------------------------------------------------------------------------------


def _check_position_chain(consumer: AIOKafkaConsumer, tp: TopicPartition) -> TopicPartitionState:
    """consumer._subscription.subscription.assignment.state_value(tp), each link of aiokafka's own type."""
    state_holder = consumer._subscription
    assert isinstance(state_holder, SubscriptionState)
    subscription = state_holder.subscription
    assert isinstance(subscription, Subscription)
    assignment = subscription.assignment
    assert isinstance(assignment, Assignment)
    state = assignment.state_value(tp)
    assert isinstance(state, TopicPartitionState)
    assert assignment.state_value(TopicPartition(tp.topic, 999)) is None  # not assigned: None, no KeyError
    for name in ("has_valid_position", "position"):
        assert isinstance(inspect.getattr_static(TopicPartitionState, name), property), name
    assert isinstance(state.has_valid_position, bool)
    return state


async def test_consumed_position_of_a_manually_assigned_partition(consumer: AIOKafkaConsumer) -> None:
    assert consumer._subscription.subscription is None
    assert ki.consumed_position(consumer, TP) is None  # no subscription yet
    consumer.assign([TP, OTHER])
    state = _check_position_chain(consumer, TP)
    assert not state.has_valid_position
    assert ki.consumed_position(consumer, TP) is None  # assigned, position not known yet
    _seek(consumer, TP, 42)
    assert state.has_valid_position and type(state.position) is int
    assert ki.consumed_position(consumer, TP) == 42
    assert ki.consumed_position(consumer, OTHER) is None
    assert ki.consumed_position(consumer, TopicPartition("t", 7)) is None  # not assigned


async def test_consumed_position_of_a_partition_the_group_assigned(consumer: AIOKafkaConsumer) -> None:
    consumer.subscribe(["t"])
    subscription = consumer._subscription.subscription
    assert isinstance(subscription, Subscription) and subscription.assignment is None  # waiting for the group
    assert ki.consumed_position(consumer, TP) is None
    consumer._subscription.assign_from_subscribed({TP})  # what the group coordinator calls on SyncGroup
    _check_position_chain(consumer, TP)
    assert ki.consumed_position(consumer, TP) is None
    _seek(consumer, TP, 7)
    assert ki.consumed_position(consumer, TP) == 7
    consumer._subscription.assign_from_subscribed({OTHER})  # a rebalance took TP away
    assert ki.consumed_position(consumer, TP) is None


async def test_consumed_position_is_unknown_without_the_chain() -> None:
    class Bare:
        pass

    assert ki.consumed_position(Bare(), TP) is None  # type: ignore[arg-type]


# ---- the group coordinator: group_generation, request_rejoin ----------------------------------------------


def test_start_makes_the_coordinators_these_functions_read() -> None:
    source = inspect.getsource(AIOKafkaConsumer.start)
    assert "self._coordinator = GroupCoordinator(" in source
    assert "self._coordinator = NoGroupCoordinator(" in source
    init = inspect.getsource(GroupCoordinator.__init__)
    assert "self.generation = OffsetCommitRequest.DEFAULT_GENERATION_ID" in init
    assert aiokafka.protocol.commit.OffsetCommitRequest.DEFAULT_GENERATION_ID == -1
    assert list(inspect.signature(GroupCoordinator.request_rejoin).parameters) == ["self"]
    assert "_coordinator" in inspect.getsource(AIOKafkaConsumer.__init__)


async def test_before_start_there_is_no_generation_and_nothing_to_rejoin(consumer: AIOKafkaConsumer) -> None:
    assert consumer._coordinator is None
    assert ki.group_generation(consumer) is None
    ki.request_rejoin(consumer)  # a no-op, no error


async def test_group_generation_and_request_rejoin_on_a_real_coordinator(consumer: AIOKafkaConsumer) -> None:
    # Built as AIOKafkaConsumer.start() builds it; with no broker it keeps looking for the group coordinator.
    coordinator = GroupCoordinator(consumer._client, consumer._subscription, group_id="g", enable_auto_commit=False)
    consumer._coordinator = coordinator
    try:
        assert type(coordinator.generation) is int
        assert ki.group_generation(consumer) is None  # -1: not joined yet
        coordinator.generation = 7  # what a JoinGroup response sets
        assert ki.group_generation(consumer) == 7
        assert not coordinator._rejoin_needed_fut.done()
        ki.request_rejoin(consumer)
        assert coordinator._rejoin_needed_fut.done()  # the coordination loop rejoins on its next turn
    finally:
        consumer._coordinator = None
        await coordinator.close()


async def test_a_consumer_without_a_group_has_no_generation_and_no_rejoin() -> None:
    c = AIOKafkaConsumer(bootstrap_servers=NOWHERE)
    coordinator = NoGroupCoordinator(c._client, c._subscription)
    c._coordinator = coordinator
    try:
        assert not hasattr(coordinator, "generation") and not hasattr(coordinator, "request_rejoin")
        assert ki.group_generation(c) is None
        ki.request_rejoin(c)
    finally:
        c._coordinator = None
        with contextlib.suppress(asyncio.CancelledError):  # its task was cancelled before it ever ran
            await coordinator.close()
        await c.stop()


# ---- metadata: force_metadata_update, metadata_update ---------------------------------------------------------


async def test_force_metadata_update_asks_the_consumers_own_client(consumer: AIOKafkaConsumer) -> None:
    assert isinstance(consumer._client, AIOKafkaClient)
    assert consumer._client.cluster is not None
    pending = ki.force_metadata_update(consumer)
    try:
        assert isinstance(pending, asyncio.Future)
        assert not pending.done()  # refreshed by the client's background task, which start() runs
        assert consumer._client._md_update_fut is not None  # the request is made at the call
    finally:
        pending.cancel()


async def test_metadata_update_is_false_when_no_broker_answers() -> None:
    client = AIOKafkaClient(bootstrap_servers=NOWHERE)
    try:
        assert inspect.iscoroutinefunction(AIOKafkaClient._metadata_update)
        assert list(inspect.signature(AIOKafkaClient._metadata_update).parameters) == [
            "self", "cluster_metadata", "topics"]
        before = client.cluster.topics()
        updated = ki.metadata_update(client, ["t"])
        assert inspect.isawaitable(updated)
        assert await updated is False  # no broker known: nobody asked, no retry, no exception
        assert client.cluster.topics() == before  # a throw-away ClusterMetadata, not the client's
    finally:
        await client.close()


# ---- the producer: producer_in_transaction, producer_fenced ------------------------------------------------


async def test_producer_in_transaction_reads_the_transaction_manager(
        producers: Callable[..., AIOKafkaProducer]) -> None:
    producer = producers(transactional_id="tx")
    manager = producer._txn_manager
    assert isinstance(manager, TransactionManager)
    assert isinstance(manager.state, TransactionState)
    assert ki.producer_in_transaction(producer) is False
    manager.set_pid_and_epoch(1, 0)  # what InitProducerId does in start()
    manager.begin_transaction()  # what begin_transaction() does once the producer id is known
    assert ki.producer_in_transaction(producer) is True
    manager.aborting_transaction()
    assert ki.producer_in_transaction(producer) is False


async def test_a_producer_without_transactions_is_never_in_one(producers: Callable[..., AIOKafkaProducer]) -> None:
    plain = producers()
    assert plain._txn_manager is None
    assert ki.producer_in_transaction(plain) is False
    idempotent = producers(enable_idempotence=True)
    assert isinstance(idempotent._txn_manager, TransactionManager)
    assert ki.producer_in_transaction(idempotent) is False


async def test_producer_fenced_reads_the_sender_task(producers: Callable[..., AIOKafkaProducer]) -> None:
    assert "ProducerFenced" in inspect.getsource(Sender._sender_routine)  # the routine ends with it, re-raised
    assert isinstance(inspect.getattr_static(Sender, "sender_task"), property)

    async def run_sender(routine: Callable[[], Coroutine[Any, Any, None]]) -> AIOKafkaProducer:
        """Sender.start() of a real (non-transactional: no producer id to wait for) producer, its routine replaced."""
        producer = producers()
        assert isinstance(producer._sender, Sender)
        assert producer._sender.sender_task is None
        assert ki.producer_fenced(producer) is False  # not started
        producer._sender._sender_routine = routine  # type: ignore[attr-defined]
        await producer._sender.start()
        assert isinstance(producer._sender.sender_task, asyncio.Task)
        return producer

    async def fenced() -> None:
        raise ProducerFenced()

    async def broken() -> None:
        raise KafkaConnectionError("down")

    release = asyncio.Event()

    async def running() -> None:
        await release.wait()

    for routine, fenced_after in ((fenced, True), (broken, False)):
        producer = await run_sender(routine)
        task = producer._sender.sender_task
        assert task is not None
        await asyncio.wait([task])
        assert ki.producer_fenced(producer) is fenced_after

    producer = await run_sender(running)
    assert ki.producer_fenced(producer) is False  # running
    task = producer._sender.sender_task
    assert task is not None
    task.cancel()
    await asyncio.wait([task])
    assert ki.producer_fenced(producer) is False  # stopped


# ---- release_future ------------------------------------------------------------------------------------------


async def test_release_future_clears_the_flag_a_yielded_future_carries() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    assert fut._asyncio_future_blocking is False

    async def agent() -> int:
        return await fut

    step = agent()
    signal = step.send(None)  # driven by hand, as the agent driver does
    assert signal is fut and fut._asyncio_future_blocking is True
    ki.release_future(signal)
    assert fut._asyncio_future_blocking is False
    loop.call_soon(fut.set_result, 5)
    await signal  # the driver's own task waits for it
    with pytest.raises(StopIteration) as done:
        step.send(None)
    assert done.value.value == 5


async def test_release_future_leaves_other_objects_alone() -> None:
    for thing in (None, object(), 3):
        ki.release_future(thing)
    task = asyncio.ensure_future(asyncio.sleep(0))
    assert asyncio.isfuture(task)
    ki.release_future(task)
    assert task._asyncio_future_blocking is False
    await task


# ---- the re-exported non-public paths --------------------------------------------------------------------------


REEXPORTS = {
    "AIOKafkaAdminClient": aiokafka.admin, "NewTopic": aiokafka.admin,
    "ConfigResource": aiokafka.admin.config_resource, "ConfigResourceType": aiokafka.admin.config_resource,
    "ClusterMetadata": aiokafka.cluster, "create_conn": aiokafka.conn,
    "AbstractPartitionAssignor": aiokafka.coordinator.assignors.abstract,
    "ConsumerProtocolMemberAssignment": aiokafka.coordinator.protocol,
    "ConsumerProtocolMemberMetadata": aiokafka.coordinator.protocol,
    "create_ssl_context": aiokafka.helpers, "DefaultPartitioner": aiokafka.partitioner,
    "BatchBuilder": aiokafka.producer.message_accumulator, "RecordMetadata": aiokafka.structs,
}


@pytest.mark.parametrize("name", sorted(REEXPORTS))
def test_every_reexport_is_aiokafkas_own(name: str) -> None:
    assert getattr(ki, name) is getattr(REEXPORTS[name], name)
    assert name in ki.__all__


async def test_the_reexports_are_what_the_engine_takes_them_for(producers: Callable[..., AIOKafkaProducer]) -> None:
    batch = producers().create_batch()
    assert isinstance(batch, ki.BatchBuilder)
    assert batch.append(timestamp=None, key=b"k", value=b"v", headers=[("h", b"1")]) is not None
    assert batch.record_count() == 1
    partition = ki.DefaultPartitioner()(b"BTCUSDT", [0, 1, 2, 3], [0, 1, 2, 3])
    assert partition in range(4) and partition == ki.DefaultPartitioner()(b"BTCUSDT", [0, 1, 2, 3], [0])
    member = ki.ConsumerProtocolMemberMetadata(0, ["a", "b"], b"")
    assert ki.ConsumerProtocolMemberMetadata.decode(member.encode()).subscription == ["a", "b"]
    cluster = ki.ClusterMetadata()
    assert cluster.partitions_for_topic("a") is None
    assert issubclass(CopartitionedAssignor, ki.AbstractPartitionAssignor)
    raw = CopartitionedAssignor.assign(cluster, {"m": member})["m"].encode()
    assert ki.ConsumerProtocolMemberAssignment.decode(raw).assignment == []
    resource = ki.ConfigResource(ki.ConfigResourceType.TOPIC, "t", {"cleanup.policy": None})
    assert (resource.resource_type, resource.name, resource.configs) == (2, "t", {"cleanup.policy": None})
    topic = ki.NewTopic("t", 3, 1, topic_configs={"cleanup.policy": "compact"})
    assert (topic.name, topic.num_partitions, topic.replication_factor) == ("t", 3, 1)
    assert isinstance(ki.create_ssl_context(), ssl.SSLContext)
    assert inspect.iscoroutinefunction(ki.create_conn)


# ---- the type stubs ------------------------------------------------------------------------------------------


def test_the_stubs_match_the_installed_aiokafka() -> None:
    """Every name and signature in stubs/aiokafka exists at runtime (stubtest cannot see instance attributes: the
    tests above check those on real objects)."""
    done = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "aiokafka", "--ignore-missing-stub", "--mypy-config-file",
         "mypy.ini", "--allowlist", "stubs/stubtest-allowlist.txt"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


# ---- the rule: nowhere else ------------------------------------------------------------------------------------

#: aiokafka's private attributes the engine has read (kafka_internals.py's functions read them now).
PRIVATE = {"_client", "_coordinator", "_subscription", "_fetcher", "_txn_manager", "_sender", "_metadata_update",
           "_asyncio_future_blocking", "_md_update_fut"}
#: Being rewritten (issue 19); the lead removes each from here when its call sites use kafka_internals.
PENDING: set[str] = set()  # modules under rewrite, checked once it lands (none left)
MODULES = sorted(p.name for p in ENGINE.glob("*.py") if p.name != "kafka_internals.py")


def _violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("aiokafka."):
            if node.module != "aiokafka.errors":
                found.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names
                      if a.name.startswith("aiokafka.") and a.name != "aiokafka.errors"]
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE:
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Constant) and node.value in PRIVATE:  # getattr(x, "_sender")
            found.append(f"line {node.lineno}: {node.value!r}")
    return found


@pytest.mark.parametrize("module", [m for m in MODULES if m not in PENDING])
def test_no_other_engine_module_touches_aiokafka_internals(module: str) -> None:
    assert _violations(ENGINE / module) == [], (
        f"engine/{module}: use stream_processor.engine.kafka_internals (aiokafka's top level and aiokafka.errors "
        "are the only aiokafka imports allowed elsewhere)")


def test_the_rule_catches_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from aiokafka.cluster import ClusterMetadata\nfrom aiokafka.errors import KafkaError\n"
                      "import aiokafka.conn\nfrom aiokafka import TopicPartition\n"
                      "x = consumer._coordinator\nself._client = 1\ny = getattr(producer, '_sender', None)\n")
    assert _violations(sample) == ["line 1: from aiokafka.cluster import ...", "line 3: import aiokafka.conn",
                                   "line 5: ._coordinator", "line 7: '_sender'"]
