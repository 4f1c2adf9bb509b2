"""The partition group: a task's inputs in timestamp order, waiting for an input with nothing buffered (KIP-353,
KIP-695), progress records."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition

from stream_processor.engine.partition_group import PROGRESS_HEADER, PartitionGroup, is_progress

A, B = TopicPartition("a", 0), TopicPartition("b", 0)


@dataclass
class Rec:
    offset: int
    timestamp: int
    headers: tuple[tuple[str, bytes], ...] = ()


def recs(*timestamps: int, start: int = 0) -> list[Rec]:
    return [Rec(start + i, ts) for i, ts in enumerate(timestamps)]


def drain(group: PartitionGroup, now: float = 0.0, force: bool = False) -> list[tuple[str, int, int]]:
    """Every record the group gives, as (topic, offset, timestamp), until it gives none."""
    out = []
    while (run := group.next_run(now, force=force)) is not None:
        out.extend((run.tp.topic, r.offset, r.timestamp) for r in run.records)
    return out


def test_one_input_is_taken_as_fetched_whatever_its_timestamps() -> None:
    group = PartitionGroup([A], max_idle_ms=0, lag=lambda tp: 0)
    group.add(A, recs(5, 3, 9))
    run = group.next_run(0.0)
    assert run is not None and [r.offset for r in run.records] == [0, 1, 2] and run.enforced == frozenset()
    assert group.next_run(0.0) is None and len(group) == 0


def test_two_inputs_are_merged_by_timestamp_ties_to_the_first_listed() -> None:
    group = PartitionGroup([A, B], max_idle_ms=0, lag=lambda tp: 0)
    group.add(A, recs(1, 3, 3, 7, 8))
    group.add(B, recs(2, 3, 6, 9))
    # Both have records until A's last one: that far it is a pure merge; then B waits on A (empty, caught up:
    # with max_idle_ms 0 the task goes on at once, enforced).
    taken = drain(group)
    assert [(t, ts) for t, _, ts in taken] == [("a", 1), ("b", 2), ("a", 3), ("a", 3), ("b", 3), ("b", 6), ("a", 7),
                                               ("a", 8), ("b", 9)]


def test_the_merge_does_not_depend_on_which_input_was_fetched_first() -> None:
    a, b = recs(10, 20, 30, 40), recs(15, 25, 35)
    orders = []
    for first in ("a", "b"):
        group = PartitionGroup([A, B], max_idle_ms=1000, lag=lambda tp: 0)
        # The partitions arrive in pieces, in another order each time; what is given while one input is empty waits.
        pieces = [(A, a[:2]), (B, b[:1]), (A, a[2:]), (B, b[1:])] if first == "a" else \
            [(B, b), (A, a[:1]), (A, a[1:])]
        taken = []
        for tp, part in pieces:
            group.add(tp, part)
            taken += drain(group, now=0.0)
        taken += drain(group, now=0.0, force=True)
        orders.append(taken)
    assert orders[0] == orders[1]
    assert [ts for _, _, ts in orders[0]] == [10, 15, 20, 25, 30, 35, 40]


def test_an_input_with_records_on_the_broker_is_waited_for_however_long() -> None:
    lag = {A: 0, B: 3}
    group = PartitionGroup([A, B], max_idle_ms=100, lag=lag.get)
    group.add(A, recs(1, 2))
    assert group.next_run(0.0) is None
    assert group.next_run(1e9) is None  # no deadline for a lagging partition: its records will be fetched
    lag[B] = None  # unknown (not fetched yet): wait too
    assert group.next_run(1e9) is None


def test_a_caught_up_input_is_waited_for_max_task_idle_ms_then_enforced() -> None:
    group = PartitionGroup([A, B], max_idle_ms=100, lag=lambda tp: 0)
    group.add(A, recs(1, 2))
    assert group.next_run(1000.0) is None  # the deadline is set now: 1100
    assert group.next_deadline() == 1100.0
    assert group.next_run(1099.0) is None
    run = group.next_run(1100.0)
    assert run is not None and run.tp == A and [r.timestamp for r in run.records] == [1, 2]
    assert run.enforced == frozenset({"b"})
    group.add(B, recs(5))  # data arrives: B's deadline goes; now A has none (it gave up to 2) and gets one
    assert group.next_deadline() is None
    assert group.next_run(1200.0) is None and group.next_deadline() == 1300.0
    group.add(A, recs(6, start=2))  # both have records: the order is by timestamp again
    run = group.next_run(1200.0)
    assert run is not None and run.tp == B and run.enforced == frozenset()


def test_an_empty_input_does_not_hold_back_records_before_its_partition_time() -> None:
    # Its next records come at or after the largest timestamp it has given (ties: the first listed goes first), so
    # a record of another input before that goes at once, without a wait and not enforced.
    group = PartitionGroup([A, B], max_idle_ms=60_000, lag=lambda tp: 0)
    group.add(A, recs(10, 20, 30))
    group.add(B, recs(20))
    assert drain(group) == [("a", 0, 10), ("a", 1, 20), ("b", 0, 20)]  # then A's 30 waits: B has given 20 only
    group.add(B, recs(30, start=1))
    run = group.next_run(0.0)  # A (listed first) before B at equal timestamps
    assert run is not None and run.tp == A and run.enforced == frozenset()
    late = PartitionGroup([A, B], max_idle_ms=60_000, lag=lambda tp: 0)
    late.add(B, recs(25))
    late.add(A, recs(30))
    assert drain(late) == [("b", 0, 25)]
    late.add(B, recs(24, start=1))  # out of order in B (before B's time 25): taken when it comes, A still waits
    assert drain(late) == [("b", 1, 24)]


def test_force_goes_on_without_caught_up_inputs_but_not_lagging_ones() -> None:
    lag = {A: 0, B: 0}
    group = PartitionGroup([A, B], max_idle_ms=60_000, lag=lag.get)
    group.add(A, recs(1))
    assert group.next_run(0.0) is None
    run = group.next_run(0.0, force=True)
    assert run is not None and run.enforced == frozenset({"b"})
    group.add(A, recs(2, start=1))
    lag[B] = 5
    assert group.next_run(0.0, force=True) is None


def test_minus_one_never_waits_and_says_so() -> None:
    group = PartitionGroup([A, B], max_idle_ms=-1, lag=lambda tp: 7)
    group.add(B, recs(4, 5))
    run = group.next_run(0.0)  # A has records on the broker, maybe earlier: B goes on without them, enforced
    assert run is not None and run.tp == B and run.enforced == frozenset({"a"})
    group.add(A, recs(9))
    run = group.next_run(0.0)  # nothing left of B before A's 9, and B is empty: A goes on, enforced, at once
    assert run is not None and run.tp == A and [r.timestamp for r in run.records] == [9]
    assert run.enforced == frozenset({"b"})


def test_limit_unread_and_clear() -> None:
    group = PartitionGroup([A, B], max_idle_ms=0, lag=lambda tp: 0)
    group.add(A, recs(1, 2, 3, 4))
    group.add(B, recs(10))
    run = group.next_run(0.0, limit=2)
    assert run is not None and [r.offset for r in run.records] == [0, 1]
    group.unread(A, run.records[1:])
    assert group.buffered(A) == 3
    assert [r.offset for r in group.next_run(0.0).records] == [1, 2, 3]  # type: ignore[union-attr]
    group.clear()
    assert len(group) == 0 and group.next_run(0.0) is None


def test_a_progress_record_orders_like_a_record() -> None:
    progress = Rec(0, 50, ((PROGRESS_HEADER, b""),))
    assert is_progress(progress.headers) and not is_progress(()) and not is_progress((("other", b""),))
    group = PartitionGroup([A, B], max_idle_ms=1000, lag=lambda tp: 0)
    group.add(A, recs(10, 40, 60))
    group.add(B, [progress])
    # The trades before the progress record's time go; the one after waits for B's next record.
    assert drain(group, now=0.0) == [("a", 0, 10), ("a", 1, 40), ("b", 0, 50)]
    assert group.next_run(0.0) is None
