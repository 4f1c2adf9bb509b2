"""Keys, values and Records on the wire as Faust writes and reads them: each case compares this engine's bytes with
faust-streaming 0.15.3's ``Registry`` (faust/serializers/registry.py) both ways, and the Record features with
faust's own Record."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import types
from typing import Any

import faust
import orjson
import pytest
from faust.exceptions import KeyDecodeError, ValueDecodeError
from faust.exceptions import ValidationError as FaustValidationError
from faust.serializers.registry import Registry

from stream_processor.engine import Record
from stream_processor.engine.exceptions import InvalidRecordError, RecordError
from stream_processor.engine.records import (
    FieldDescriptor,
    ValidationError,
    decode_state,
    encode_state,
    field_name,
)
from stream_processor.engine.topic import Topic
from tests.unit.engine.support import make_app

UTC = datetime.UTC


def _app(value_serializer: Any = "json", key_serializer: Any = "raw") -> Any:
    """An App stand-in with Faust's ``conf`` serializers (the defaults: json values, raw keys)."""
    return types.SimpleNamespace(conf=types.SimpleNamespace(value_serializer=value_serializer,
                                                            key_serializer=key_serializer))


def _registry(app: Any) -> Registry:
    return Registry(key_serializer=app.conf.key_serializer, value_serializer=app.conf.value_serializer)


# ---- values -------------------------------------------------------------------------------------------------

VALUES = [
    (None, "hello"),
    (None, {"a": 1, "price": decimal.Decimal("1.25"), "pair": (1, 2), 3: "int key", "at": datetime.datetime(
        2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)}),
    (None, [1, "x", None, 2.5]),
    (None, None),
    (None, b"\x00raw\xff"),
    (str, "héllo"),
    (str, ""),
    (bytes, b"\x00\xff"),
    (int, 42),
    (float, 1.5),
    (decimal.Decimal, decimal.Decimal("3.14")),
]


@pytest.mark.parametrize("serializer", [None, "json", "raw"])
@pytest.mark.parametrize(("typ", "value"), VALUES)
def test_a_value_is_written_and_read_as_faust_does(typ: Any, value: Any, serializer: str | None) -> None:
    app = _app()
    topic = Topic(app, "t", value_type=typ, value_serializer=serializer)
    registry = _registry(app)
    try:
        theirs = registry.dumps_value(typ, value, serializer=serializer)
    except Exception:  # noqa: BLE001 - what faust cannot write, we refuse too
        theirs = None
    if not isinstance(theirs, bytes | None) or (theirs is None and value is not None):
        with pytest.raises(TypeError, match="raw serializer"):
            topic.encode_value(value)
        return
    ours = topic.encode_value(value)
    assert ours == theirs
    if ours is None:
        return
    _read_alike(lambda: registry.loads_value(typ, ours, serializer=serializer),
                lambda: topic.decode_value(ours, None, None))


def _read_alike(faust_reads: Any, we_read: Any) -> None:
    """What faust reads, we read; where faust fails (bytes sent as they are to a json topic), we refuse the record."""
    try:
        expected = faust_reads()
    except (ValueDecodeError, KeyDecodeError):
        with pytest.raises(RecordError):
            we_read()
        return
    assert we_read() == expected


@pytest.mark.parametrize("app_serializer", ["json", "raw"])
def test_a_topic_declared_without_a_serializer_uses_the_apps(app_serializer: str) -> None:
    app = _app(value_serializer=app_serializer)
    topic = Topic(app, "t", value_type=str)
    assert topic.encode_value("x") == _registry(app).dumps_value(str, "x") == (
        b'"x"' if app_serializer == "json" else b"x")
    # an App without conf: Faust's defaults (json values)
    assert Topic(types.SimpleNamespace(), "t", value_type=str).encode_value("x") == b'"x"'


def test_str_values_are_json_by_default_as_in_faust_and_plain_text_is_refused() -> None:
    topic = Topic(_app(), "t", value_type=str)
    assert topic.encode_value("text") == b'"text"'
    assert topic.decode_value(b'"text"', None, None) == "text"
    with pytest.raises(RecordError, match="not JSON"):
        topic.decode_value(b"text", None, None)  # what this engine wrote before: Faust cannot read it either
    with pytest.raises(ValueDecodeError):
        _registry(_app()).loads_value(str, b"text")


def test_a_value_of_the_wrong_form_is_a_record_error() -> None:
    with pytest.raises(InvalidRecordError, match="not a valid int"):
        Topic(_app(), "t", value_type=int).decode_value(b'"abc"', None, None)
    with pytest.raises(ValueDecodeError):
        _registry(_app()).loads_value(int, b'"abc"')


# ---- keys ---------------------------------------------------------------------------------------------------

KEYS = [(None, "k"), (None, b"\xffk"), (None, None), (str, "clé"), (bytes, b"\x01"), (int, 7), (None, 7)]


@pytest.mark.parametrize("serializer", [None, "json", "raw"])
@pytest.mark.parametrize(("typ", "key"), KEYS)
def test_a_key_is_written_and_read_as_faust_does(typ: Any, key: Any, serializer: str | None) -> None:
    app = _app()
    topic = Topic(app, "t", key_type=typ, key_serializer=serializer)
    registry = _registry(app)
    # faust's Channel.prepare_key sends a None key as no key, without the registry
    theirs = None if key is None else registry.dumps_key(typ, key, serializer=serializer)
    ours = topic.encode_key(key)
    if isinstance(theirs, bytes) or theirs is None:
        assert ours == theirs
    else:  # raw of an int: faust gives the int itself, which its producer refuses; we write its JSON
        assert ours == orjson.dumps(key)
    if ours is not None:
        _read_alike(lambda: registry.loads_key(typ, ours, serializer=serializer), lambda: topic.decode_key(ours))


def test_key_type_str_is_raw_text_by_default_and_json_with_the_json_serializer() -> None:
    assert Topic(_app(), "t", key_type=str).encode_key("k") == b"k"
    assert Topic(_app(), "t", key_type=str, key_serializer="json").encode_key("k") == b'"k"'
    assert Topic(_app(key_serializer="json"), "t", key_type=str).encode_key("k") == b'"k"'
    assert Topic(_app(), "t", key_type=int).decode_key(b"12") == 12
    assert Topic(_app(), "t").decode_key(b"12") == b"12"  # no key_type, raw: bytes, as Faust gives them


# ---- refusals -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["pickle", "binary", "yaml", "json|binary", "pickle_restricted"])
def test_a_codec_we_do_not_support_is_refused_when_the_topic_is_declared(codec: str) -> None:
    with pytest.raises(ValueError, match=r"topic 'orders' value_serializer .*" + codec.replace("|", r"\|")):
        Topic(_app(), "orders", value_serializer=codec)
    with pytest.raises(ValueError, match="key_serializer"):
        Topic(_app(), "orders", key_serializer=codec)
    with pytest.raises(ValueError, match="app value_serializer"):
        Topic(_app(value_serializer=codec), "orders")
    with pytest.raises(ValueError, match="Codec objects"):
        Topic(_app(), "orders", value_serializer=faust.serializers.codecs.get_codec("json"))


def test_a_key_type_without_a_wire_form_is_refused() -> None:
    with pytest.raises(TypeError, match="key_type"):
        Topic(_app(), "t", key_type=dict)


# ---- Records ------------------------------------------------------------------------------------------------


class FLine(faust.Record, namespace="wire.Line", isodates=True):
    sku: str
    qty: int
    at: datetime.datetime


class FOrder(faust.Record, namespace="wire.Order", isodates=True):
    id: str
    line: FLine
    lines: list[FLine]
    by_sku: dict[str, FLine]
    placed: datetime.datetime
    total: decimal.Decimal = decimal.Decimal("0")
    note: str | None = None


class Line(Record, namespace="wire.Line", isodates=True):
    sku: str
    qty: int
    at: datetime.datetime


class Order(Record, namespace="wire.Order", isodates=True):
    id: str
    line: Line
    lines: list[Line]
    by_sku: dict[str, Line]
    placed: datetime.datetime
    total: decimal.Decimal = decimal.Decimal("0")
    note: str | None = None


T1 = datetime.datetime(2024, 8, 8, 12, 30, 1, 250_000, tzinfo=UTC)
T2 = datetime.datetime(2024, 8, 8, 13, 0, tzinfo=UTC)


def _orders() -> tuple[Order, FOrder]:
    a, b = Line("a", 1, T1), Line("b", 2, T2)
    fa, fb = FLine("a", 1, T1), FLine("b", 2, T2)
    ours = Order("o1", a, [a, b], {"b": b}, T2, decimal.Decimal("9.5"))
    theirs = FOrder("o1", fa, [fa, fb], {"b": fb}, T2, decimal.Decimal("9.5"))
    return ours, theirs


def _as_ours(faust_order: Any) -> dict[str, Any]:
    """A faust Order's fields, nested records as dicts (fields read through faust, which converts them)."""
    line = lambda x: {"sku": x.sku, "qty": x.qty, "at": x.at}  # noqa: E731
    return {"id": faust_order.id, "line": line(faust_order.line), "lines": [line(x) for x in faust_order.lines],
            "by_sku": {k: line(v) for k, v in faust_order.by_sku.items()}, "placed": faust_order.placed,
            "total": faust_order.total, "note": faust_order.note}


def _fields(order: Order) -> dict[str, Any]:
    line = lambda x: {"sku": x.sku, "qty": x.qty, "at": x.at}  # noqa: E731
    return {"id": order.id, "line": line(order.line), "lines": [line(x) for x in order.lines],
            "by_sku": {k: line(v) for k, v in order.by_sku.items()}, "placed": order.placed, "total": order.total,
            "note": order.note}


def test_a_record_is_written_as_faust_writes_it_with_its_namespace() -> None:
    ours, theirs = _orders()
    data = Topic(_app(), "orders", value_type=Order).encode_value(ours)
    assert data == _registry(_app()).dumps_value(FOrder, theirs)
    doc = orjson.loads(data)
    assert doc["__faust"] == {"ns": "wire.Order"} and doc["line"]["__faust"] == {"ns": "wire.Line"}
    assert doc["placed"] == "2024-08-08T13:00:00Z" and doc["total"] == "9.5"


def test_a_record_faust_wrote_reads_back_with_nested_records_and_datetimes() -> None:
    ours, theirs = _orders()
    data = _registry(_app()).dumps_value(FOrder, theirs)
    got = Topic(_app(), "orders", value_type=Order).decode_value(data, None, None)
    assert got == dataclasses.replace(ours, total="9.5")  # a Decimal field is a string unless decimals=True (Faust)
    assert type(got.line) is Line and type(got.lines[1]) is Line and type(got.by_sku["b"]) is Line
    assert got.placed == T2 and got.lines[0].at == T1
    # and faust reads ours the same way
    back = _registry(_app()).loads_value(FOrder, Topic(_app(), "o", value_type=Order).encode_value(ours))
    assert _as_ours(back) == {**_fields(ours), "total": "9.5"}


def test_a_record_without_the_faust_key_reads_too() -> None:
    ours, theirs = _orders()
    doc = orjson.loads(_registry(_app()).dumps_value(FOrder, theirs))
    del doc["__faust"], doc["line"]["__faust"]
    got = Topic(_app(), "orders", value_type=Order).decode_value(orjson.dumps(doc), None, None)
    assert got.line == ours.line and got.placed == T2


def test_include_metadata_false_leaves_the_namespace_out_as_faust() -> None:
    class Plain(Record, namespace="wire.Plain", include_metadata=False):
        x: int

    class FPlain(faust.Record, namespace="wire.Plain", include_metadata=False):
        x: int

    assert Topic(_app(), "t").encode_value(Plain(1)) == _registry(_app()).dumps_value(None, FPlain(1)) == b'{"x":1}'


def test_an_untyped_topic_builds_the_record_its_namespace_names_and_refuses_an_unknown_one() -> None:
    ours, theirs = _orders()
    data = _registry(_app()).dumps_value(None, theirs)
    topic = Topic(_app(), "any")
    assert topic.decode_value(data, None, None) == dataclasses.replace(ours, total="9.5")
    unknown = b'{"x":1,"__faust":{"ns":"nowhere.X"}}'
    with pytest.raises(InvalidRecordError, match="nowhere.X"):
        topic.decode_value(unknown, None, None)
    with pytest.raises(ValueDecodeError):
        _registry(_app()).loads_value(None, unknown)
    assert topic.decode_value(b'{"x":1}', None, None) == {"x": 1}


def test_a_missing_record_value_is_a_record_error() -> None:
    with pytest.raises(RecordError, match="no value"):
        Topic(_app(), "orders", value_type=Order).decode_value(None, None, None)


def test_a_record_class_with_another_serializer_is_refused() -> None:
    with pytest.raises(TypeError, match="serializer 'pickle'"):
        class Pickled(Record, serializer="pickle"):
            x: int


# ---- isodates, coerce, validation -----------------------------------------------------------------------------


def test_datetime_fields_are_parsed_with_isodates_and_left_as_text_without_as_faust() -> None:
    class Iso(Record, isodates=True):
        at: datetime.datetime

    class NotIso(Record):
        at: datetime.datetime

    class FNotIso(faust.Record):
        at: datetime.datetime

    assert Iso.from_data({"at": "2024-01-02T03:04:05Z"}).at == datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert NotIso.from_data({"at": "2024-01-02T03:04:05Z"}).at == "2024-01-02T03:04:05Z"
    assert FNotIso.from_data({"at": "2024-01-02T03:04:05Z"}).at == "2024-01-02T03:04:05Z"


def test_date_parser_and_decimals_options() -> None:
    class Custom(Record, isodates=True, date_parser=lambda s: datetime.datetime(2000, 1, 1), decimals=True):
        at: datetime.datetime
        amount: decimal.Decimal

    got = Custom.from_data({"at": "whatever", "amount": "1.10"})
    assert got.at == datetime.datetime(2000, 1, 1) and got.amount == decimal.Decimal("1.10")


class VPoint(Record, validation=True):
    x: int
    label: str
    ok: bool = False


class FVPoint(faust.Record, validation=True):
    x: int
    label: str
    ok: bool = False


@pytest.mark.parametrize(("args", "ours", "theirs", "words"), [
    (("abc", "a"), ValueError, ValueError, "invalid literal for int"),
    ((1, ""), ValidationError, FaustValidationError, "label cannot be left blank"),
])
def test_validation_raises_as_faust_does(args: tuple[Any, ...], ours: type, theirs: type, words: str) -> None:
    with pytest.raises(ours, match=words) as raised:
        VPoint(*args)
    with pytest.raises(theirs, match=words):
        FVPoint(*args)
    assert isinstance(raised.value, ValueError)  # faust's ValidationError is a ValueError too


def test_validation_coerces_as_faust_does() -> None:
    ours, theirs = VPoint("5", 3, 1), FVPoint("5", 3, 1)
    assert (ours.x, ours.label, ours.ok) == (theirs.x, theirs.label, theirs.ok) == (5, "3", True)
    with pytest.raises(ValidationError):
        VPoint.from_data({"x": 1, "label": ""})


def test_a_validation_error_in_a_topic_value_dead_letters_it() -> None:
    with pytest.raises(InvalidRecordError, match="cannot be left blank"):
        Topic(_app(), "t", value_type=VPoint).decode_value(b'{"x":1,"label":""}', None, None)


# ---- field references -----------------------------------------------------------------------------------------


class Withdrawal(Record):
    user: str
    country: str
    amount: float = 0.0


class FWithdrawal(faust.Record):
    user: str
    country: str
    amount: float = 0.0


def test_a_field_at_class_level_is_a_descriptor_like_faust() -> None:
    ref = Withdrawal.country
    assert isinstance(ref, FieldDescriptor)
    assert (ref.field, ref.model, ref.required) == ("country", Withdrawal, True)
    assert repr(ref) == repr(FWithdrawal.country).replace("FWithdrawal", "Withdrawal")
    assert repr(Withdrawal.amount) == repr(FWithdrawal.amount).replace("FWithdrawal", "Withdrawal")
    w = Withdrawal("ann", "FR", 10.0)
    assert (w.country, ref(w), ref.getattr(w), ref({"country": "DE"})) == ("FR", "FR", "FR", "DE")
    assert field_name(ref) == "country" and field_name(FWithdrawal.country) == "country"
    assert field_name("country") is None and field_name(len) is None and field_name(Withdrawal) is None


# ---- table state keeps types ------------------------------------------------------------------------------------


def test_table_values_keep_their_types_through_a_restore() -> None:
    ours, _ = _orders()
    values = [
        ours,
        T1,
        datetime.date(2024, 1, 2),
        decimal.Decimal("1.10"),
        {1, 2, 3},
        frozenset({"a"}),
        (1, "x", (2, 3)),
        {"when": T1, "amounts": [decimal.Decimal("2.5")], "pair": ("a", 1), "orders": {"o": ours}},
        [ours.line, {"tags": {"x"}}],
    ]
    for value in values:
        back = decode_state(encode_state(value))
        assert back == value and type(back) is type(value)
    back = decode_state(encode_state(values[7]))
    assert type(back["pair"]) is tuple and type(back["amounts"][0]) is decimal.Decimal
    assert type(back["orders"]["o"]) is Order and type(back["orders"]["o"].line) is Line
    assert decode_state(encode_state({"plain": [1, 2]})) == {"plain": [1, 2]}


def test_a_value_with_no_json_form_still_fails_to_encode() -> None:
    with pytest.raises(TypeError):
        encode_state(object())


# ---- through an agent ---------------------------------------------------------------------------------------------


def test_an_agent_reads_and_writes_str_topics_as_json(drive: Any) -> None:
    app = make_app()
    words = app.topic("words", value_type=str)
    upper = app.topic("upper", value_type=str)
    orders = app.topic("orders", value_type=Order)
    seen: list[Any] = []

    @app.agent(words, sink=[upper])
    async def shout(stream: Any) -> Any:
        async for word in stream:
            yield word.upper()

    @app.agent(orders)
    async def take(stream: Any) -> Any:
        async for order in stream:
            seen.append(order)
            await upper.send(key="o", value=order.id)

    driver = drive(app)
    driver.pipe("words", b'"hello"', key=b"k")
    ours, theirs = _orders()
    driver.pipe("orders", _registry(_app()).dumps_value(FOrder, theirs), key=b"o1")
    assert [r.value for r in driver.read("upper")] == [b'"HELLO"', b'"o1"']
    assert seen == [dataclasses.replace(ours, total="9.5")]


def test_an_optional_field_at_the_end_defaults_to_none_as_in_faust() -> None:
    class Note(Record):
        text: str
        author: str | None

    class FNote(faust.Record):
        text: str
        author: str | None

    assert Note("x").author is None and FNote("x").author is None
    assert Note.from_data({"text": "x"}) == Note("x", None)


def test_a_json_store_restores_its_values_with_their_types() -> None:
    from stream_processor.engine.state import ChangelogStore, StoreSpec, TaskStores

    ours, _ = _orders()
    store = ChangelogStore(StoreSpec(name="t"))
    values = {"order": ours, "when": T1, "amount": decimal.Decimal("0.10"), "seen": {"a", "b"}, "pair": (1, 2)}
    for key, value in values.items():
        store.put(key, value)
    restored = TaskStores([StoreSpec(name="t")])
    for key, value in store.changelog_records():
        restored.load(key, value)
    back = {key: restored["t"].get(key) for key in values}
    assert back == values and {k: type(v) for k, v in back.items()} == {k: type(v) for k, v in values.items()}


def test_group_by_a_model_field_reference(drive: Any) -> None:
    app = make_app()
    withdrawals = app.topic("withdrawals", value_type=Withdrawal)
    totals = app.Table("totals", default=float)

    @app.agent(withdrawals)
    async def by_country(stream: Any) -> Any:
        async for w in stream.group_by(Withdrawal.country):
            totals[w.country] += w.amount

    driver = drive(app)
    for i, country in enumerate(["FR", "DE", "FR"]):
        driver.pipe("withdrawals", Withdrawal(f"u{i}", country, 10.0 + i).dumps(), key=f"u{i}".encode())
    assert driver.table("totals") == {"FR": 22.0, "DE": 11.0}


def test_a_record_prints_as_faust_prints_it() -> None:
    assert repr(Withdrawal("ann", "FR")) == repr(FWithdrawal("ann", "FR")).replace("FWithdrawal", "Withdrawal")
