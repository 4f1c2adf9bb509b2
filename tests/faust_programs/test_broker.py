"""The broker form: each faust-streaming example program whose input is records on topics and whose results are
tables or records it sends, with only its import line changed, run by the worker on a real broker, killed with
``kill -9`` mid-stream and restarted, ends with the tables and records faust-streaming's ``test_context`` gives on
the same input (:mod:`tests.faust_programs.broker` describes the run and how tables are read from their changelogs).

Every input is larger than :mod:`~tests.faust_programs.scenarios`' (thousands of records, sent over 7-8 s), so
that worker 1 is killed 1.5-3.5 s into the stream, while it processes it. Equal tables of counts and sums mean each
input record counted once: a duplicate would count one too many, a loss one too few; an output topic equal as a
multiset means no record lost and none written twice. Times are ms since the epoch.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from .broker import BrokerOutcome, BrokerRun, run_on_broker
from .harness import Put
from .scenarios import WORDS


def _json(value: object) -> bytes:
    return orjson.dumps(value)


def now_ms() -> int:
    """The wall clock (ms since the epoch): the input's record times start there, live data. Replayed data (the
    scenarios' 2023 times) would be deleted under the worker: the broker rolls a segment as soon as its first record
    is older than ``segment.ms`` (7 days) and deletes segments whose newest record is older than ``retention.ms`` (7
    days) at its next retention check, input and repartition topics alike."""
    return int(time.time() * 1000)


def run(case: BrokerRun, kafka_bootstrap: str, tmp_path: Path) -> BrokerOutcome:
    started = time.monotonic()
    outcome = asyncio.run(run_on_broker(case, kafka_bootstrap, tmp_path))
    print(f"{case.name}: {len(case.steps)} records, w1 killed at {outcome.committed_at_kill} committed, "
          f"{time.monotonic() - started:.1f} s {outcome.timeline}")
    return outcome


def test_page_views_counts_each_view_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The pageviews tutorial: 3000 views (key: the user, as a web tier keys them) of 6 pages by 50 users, regrouped
    by page (``group_by(PageView.id)`` through a repartition topic) and counted in ``page_views``, held by the
    agent's body stage ``count_page_views``; w1 killed once 600 views are committed by the first stage."""
    rng = random.Random(20)
    start = now_ms()
    steps = []
    for i in range(3000):
        user = f"user-{rng.randint(1, 50)}"
        steps.append(Put("page_view_topic", _json({"id": f"page-{rng.randint(1, 6)}", "user": user}),
                         key=user.encode(), timestamp_ms=start + i))
    case = BrokerRun("page_views", steps, kill_at=600, tables={"page_views": "count_page_views"}, rate=400)
    outcome = run(case, kafka_bootstrap, tmp_path)
    assert sum(outcome.faust.tables["page_views"].values()) == 3000
    assert outcome.ours.tables == outcome.faust.tables


def test_word_count_counts_and_sends_each_word_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    """word_count: 1500 posts of 1-4 words, sent over 7.5 s; ``shuffle_words`` sends each word to ``count_words``
    (an agent's own topic), which counts it in ``word_counts``. Compared: the table and every record sent to
    ``count_words``' topic.

    The program's ``app.task`` ``sender`` sends 4000 one-word posts to its own input each time a worker starts (on
    w1 as far as it got before the kill, then 4000 on w2), at least once; it prints the table (``$$ TALLY $$``,
    title-cased) 5 s after its last send, so the input is complete once w2 has printed it. What the input topic then
    holds beside the 1500 posts (the sender's posts, exactly as many as are there) is given to ``test_context``
    after them. w1 is killed once 300 posts are committed (the sender's among them)."""
    rng = random.Random(1)
    posts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))) for _ in range(1500)]
    start = now_ms()
    steps = [Put("posts_topic", _json(p), timestamp_ms=start + i) for i, p in enumerate(posts)]
    case = BrokerRun("word_count", steps, kill_at=300, tables={"word_counts": "count_words"},
                     topics=("count_words",), rate=200, settled=lambda log: "$$ tally $$" in log.lower())
    outcome = run(case, kafka_bootstrap, tmp_path)
    sender = sum(len(r) for r in outcome.extra_input.values())
    assert 4000 <= sender <= 8000  # w2's 4000, and what w1 sent before its kill
    words = sum(len(p.split()) for p in posts) + sender
    assert sum(outcome.faust.tables["word_counts"].values()) == words
    assert outcome.ours.tables == outcome.faust.tables
    assert outcome.ours.records == outcome.faust.records  # each word once in count_words' topic


def _withdrawals(n: int, start_ms: int) -> list[Put]:
    """``n`` withdrawals as examples/withdrawals.py's generate_withdrawals_dict makes them (5 countries, 90% in
    country_0; 50 users), 20 ms apart from ``start_ms``, ``date`` the same instant, amounts whole quarters (sums of
    them are exact in any order: the country totals are summed in the order the repartition topic interleaves its
    writers). Each goes to the topic keyed by user, as the program's ``produce`` sends it, and to the agent
    ``track_country_withdrawal`` (its own topic), as ``scenarios.withdrawals`` gives it."""
    rng = random.Random(5)
    countries = [f"country_{i}" for i in range(5)]
    steps = []
    for i in range(n):
        ms = start_ms + 20 * i
        user = f"user_{rng.randrange(50)}"
        w = {"user": user, "amount": rng.randint(0, 100_000) / 4,
             "country": rng.choices(countries, [0.9] + [0.1 / 5] * 4)[0],
             "date": datetime.fromtimestamp(ms / 1000, UTC).isoformat()}
        steps.append(Put("withdrawals_topic", _json(w), key=user.encode(), timestamp_ms=ms))
        sent = {**w, "__faust": {"ns": "faust_programs_withdrawals.Withdrawal"}}  # track_country_withdrawal.send
        steps.append(Put("track_country_withdrawal", _json(sent), key=user.encode(), timestamp_ms=ms))
    return steps


def test_withdrawals_sums_each_withdrawal_once_in_both_windowed_tables(kafka_bootstrap: str, tmp_path: Path) -> None:
    """withdrawals: 1500 withdrawals, each to ``withdrawals_topic`` (``track_user_withdrawal``: ``user_to_total``,
    1-hour tumbling windows of the record time, no expiry) and to ``track_country_withdrawal`` (``group_by`` country
    through a repartition topic: ``country_to_total``, 10 s tumbling windows expiring 10 s after them); both tables
    compared whole, windows as Faust keys them ``(key, (start_s, end_s))``.

    The record times start 10 minutes after the wall clock (30 s of record time): ``country_to_total``'s windows
    expire by the worker's WALL-CLOCK cleanup (every 30 s, a window once its end is 10 s behind the clock, as
    Faust's), so live or replayed data would lose its windows at the first cleanup after the run, a race with the
    comparison; these expire 10 minutes after it, whatever the machine's speed (the broker takes timestamps up to
    an hour ahead). ``test_context`` runs no cleanup: it has every window."""
    steps = _withdrawals(1500, now_ms() + 600_000)
    case = BrokerRun("withdrawals", steps, kill_at=600, rate=400,
                     tables={"user_to_total": "track_user_withdrawal", "country_to_total": "track_country_withdrawal"})
    outcome = run(case, kafka_bootstrap, tmp_path)
    assert len(outcome.faust.tables["country_to_total"]) >= 5  # several windows of several countries
    assert outcome.ours.tables == outcome.faust.tables


def test_tabletest_sums_each_partitions_values_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    """tabletest: the program's ``produce`` command's records for i < 900 (value i to each of the 4 partitions of
    ``countstopic``, keyed by the partition number, to that partition explicitly), 3600 records; ``count`` adds them
    to ``counts[partition]`` (and sleeps an hour on a value out of sequence, which would stall w2 past the
    deadline). w1 killed once 720 are committed.

    Beside the end, each state of ``counts[j]`` the changelog holds (read_committed) must be one the program passes
    through: 0 + 1 + ... + (k - 1) for a k growing from state to state. A value processed twice, or skipped, in a
    committed transaction would leave (but for a coincidence) a sum that is none of those."""
    start = now_ms()
    steps = [Put("source_topic", _json(i), key=str(j).encode(), partition=j, timestamp_ms=start + 4 * i + j)
             for i in range(900) for j in range(4)]
    case = BrokerRun("tabletest", steps, kill_at=720, tables={"counts": "count"}, rate=500)
    outcome = run(case, kafka_bootstrap, tmp_path)
    assert outcome.faust.tables["counts"] == {str(j): sum(range(900)) for j in range(4)}
    assert outcome.ours.tables == outcome.faust.tables
    sums = {k * (k - 1) // 2: k for k in range(901)}
    for key, states in outcome.histories["counts"].items():
        ks = [sums.get(state, -1) for state in states]
        assert -1 not in ks and ks == sorted(ks), f"counts[{key}] went through {states}"


def test_kubernetes_consumer_counts_each_score_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    """kubernetes_consumer: 3000 Score records keyed ``score`` (as its producer sends them), regrouped by
    ``index % 2`` (``group_by(get_score_key, name='index_partition')``) and counted in ``table`` (``totals`` and
    one key per group) by the body stage ``print_totals``; w1 killed once 600 are committed by the first stage.

    Its topic ``test`` gets the partitions the engine gives a topic the program does not size, 1 (Faust's default
    ``topic_partitions`` is 8), and the repartition topic as many: so ``totals``, which the agent writes from
    whichever group's record it is processing, is one key, as in ``test_context``'s one table (with several
    repartition partitions each would keep a ``totals`` of its own, in Faust's worker as here)."""
    rng = random.Random(10)
    start = now_ms()
    steps = [Put("test_topic", _json({"index": i, "value": round(rng.random(), 2)}), key=b"score",
                 timestamp_ms=start + i) for i in range(3000)]
    case = BrokerRun("kubernetes_consumer", steps, kill_at=600, tables={"table": "print_totals"}, rate=400)
    outcome = run(case, kafka_bootstrap, tmp_path)
    assert outcome.faust.tables["table"] == {"totals": 3000, "partition: 0": 1500, "partition: 1": 1500}
    assert outcome.ours.tables == outcome.faust.tables


def _people(n: int) -> list[Put]:
    """``n`` joins and leaves (the ``joining``/``leaving`` commands' records: key the place, value the name) of 20
    people at 6 places, the first 120 joins; two records of one (place, person) at least 30 records apart (75 ms at
    400/s), so that a pair's join and leave are on the broker in the order they were sent, whatever the producer's
    batching (they are on two topics)."""
    rng = random.Random(3)
    people = [f"person-{i}" for i in range(20)]
    places = ["oslo", "lima", "kyiv", "pune", "nuuk", "baku"]
    recent: list[tuple[str, str]] = []
    start = now_ms()
    steps = []
    for i in range(n):
        while (pair := (rng.choice(places), rng.choice(people))) in recent:
            pass
        recent = [*recent[-29:], pair]
        topic = "joining_topic" if i < 120 or rng.random() < 0.55 else "leaving_topic"
        steps.append(Put(topic, _json(pair[1]), key=pair[0].encode(), timestamp_ms=start + i))
    return steps


def test_tableofset_adds_and_discards_each_person_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    """tableofset: 3000 joins and leaves to ``people_joining2`` / ``people_leaving2`` (4 partitions each, keyed by
    place); ``join`` adds the person to ``table[place]`` (a SetTable), ``leave`` discards them. The two agents share
    the table, so here they run as one processor ``join__leave`` whose task of partition q takes both topics' records
    in timestamp order (the order they were sent in): each set ends as the last join or leave of each person left
    it, as under ``test_context``, which gives the records one by one in that order.

    This catches a lost record and records taken out of order, not a duplicate: ``add`` and ``discard`` are
    idempotent, so records processed twice in order leave the same sets (run under ``at_least_once``, the other
    programs' tests fail on their duplicates; this one passes)."""
    case = BrokerRun("tableofset", _people(3000), kill_at=600, tables={"table": "join__leave"}, rate=400)
    outcome = run(case, kafka_bootstrap, tmp_path)
    assert any(outcome.faust.tables["table"].values())
    assert outcome.ours.tables == outcome.faust.tables
