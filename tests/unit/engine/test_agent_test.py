"""Faust's ``agent.test_context()``: the testing guide's programs and their tests (faust-streaming's
``docs/userguide/testing.rst``), run under faust-streaming 0.15.3 and here with only the import line changed; each
test must pass under both, and what ``put`` and ``results`` give must be the same."""

from __future__ import annotations

import asyncio
import types
from typing import Any
from unittest.mock import AsyncMock

import pytest

# The guide's "Basics" program: a re-keyed agent counting orders per account, and its test.
ORDERS = '''
app = faust.App('test-example')

class Order(faust.Record, serializer='json'):
    account_id: str
    product_id: str
    amount: int
    price: float

orders_topic = app.topic('orders', value_type=Order)
orders_for_account = app.Table('order-count-by-account', default=int)

@app.agent(orders_topic)
async def order(orders):
    async for order in orders.group_by(Order.account_id):
        orders_for_account[order.account_id] += 1
        yield order

async def test_order():
    async with order.test_context() as agent:
        o = Order(account_id='1', product_id='2', amount=1, price=300)
        event = await agent.put(o)
        assert orders_for_account[o.account_id] == 1
        await agent.put(o)
        assert orders_for_account[o.account_id] == 2
        return event, dict(agent.results), agent.sent_offset, agent.processed_offset
'''

# The guide's "Setting up a test suite": a sink-less agent, its fixtures and its four tests.
MYAPP = '''
class Order(faust.Record, serializer='json'):
    account_id: str
    amount: int

app = faust.App('orders-app', broker='kafka://localhost:9092')
orders_topic = app.topic('orders', value_type=Order)
shipped_topic = app.topic('shipped', value_type=Order)
orders_for_account = app.Table('order-count-by-account', default=int)

async def notify_warehouse(order: Order) -> None:
    """Pretend this calls an external HTTP service."""

@app.agent(orders_topic)
async def track_order(orders):
    async for order in orders:
        orders_for_account[order.account_id] += 1
        await notify_warehouse(order)
        await shipped_topic.send(value=order)

async def test_counts_orders_per_account():
    async with track_order.test_context() as agent:
        await agent.put(Order(account_id='A', amount=1))
        assert orders_for_account['A'] == 1
        await agent.put(Order(account_id='A', amount=2))
        assert orders_for_account['A'] == 2

async def test_notifies_warehouse(warehouse):
    async with track_order.test_context() as agent:
        order = Order(account_id='B', amount=3)
        await agent.put(order)
        warehouse.assert_awaited_once_with(order)

async def test_forwards_to_shipped_topic(shipped):
    async with track_order.test_context() as agent:
        order = Order(account_id='C', amount=4)
        await agent.put(order)
        shipped.assert_awaited_once_with(value=order)

async def test_results_records_input_values():
    async with track_order.test_context() as agent:
        order = Order(account_id='D', amount=5)
        await agent.put(order)
        assert agent.results[0] == order
'''

# The guide's agent calling another: the called one tested alone; and an agent that raises.
YOLO = '''
app = faust.App('example-test-agent-call')

@app.agent()
async def bar(stream):
    async for value in stream:
        if value == 'boom':
            raise ValueError('boom')
        yield value + 'YOLO'

async def test_bar():
    async with bar.test_context() as agent:
        event = await agent.put('hey')
        assert agent.results[event.message.offset] == 'heyYOLO'
        try:
            await agent.put('boom')
        except ValueError as exc:
            return str(exc), dict(agent.results)
        raise AssertionError('put() did not raise what the agent raised')
'''


def load(source: str, ours: bool) -> types.ModuleType:
    module = types.ModuleType("guide_ours" if ours else "guide_faust")
    line = "import stream_processor as faust" if ours else "import faust"
    exec(compile(line + "\n" + source, f"<{module.__name__}>", "exec", dont_inherit=True), module.__dict__)  # noqa: S102
    app = module.app
    if not ours:
        app.finalize()
        app.conf.store = "memory://"
    app.flow_control.resume()
    return module


@pytest.mark.parametrize("ours", [False, True], ids=["faust", "ours"])
def test_the_guides_order_test_passes_and_puts_return_the_same(ours: bool) -> None:
    module = load(ORDERS, ours)
    event, results, sent, processed = asyncio.run(asyncio.wait_for(module.test_order(), 30))
    assert (event.key, event.value.account_id, event.message.offset) == (None, "1", 0)
    assert [(i, r.asdict()) for i, r in results.items()] == [
        (i, {"account_id": "1", "product_id": "2", "amount": 1, "price": 300}) for i in (0, 1)]
    assert (sent, processed) == (2, 2)


@pytest.mark.parametrize("ours", [False, True], ids=["faust", "ours"])
def test_the_guides_test_suite_passes(ours: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load(MYAPP, ours)
    shipped, warehouse = AsyncMock(), AsyncMock()
    monkeypatch.setattr(module.shipped_topic, "send", shipped)
    monkeypatch.setattr(module, "notify_warehouse", warehouse)

    async def suite() -> None:
        await module.test_counts_orders_per_account()
        warehouse.reset_mock()
        await module.test_notifies_warehouse(warehouse)
        shipped.reset_mock()
        await module.test_forwards_to_shipped_topic(shipped)
        await module.test_results_records_input_values()

    asyncio.run(asyncio.wait_for(suite(), 30))


@pytest.mark.parametrize("ours", [False, True], ids=["faust", "ours"])
def test_results_by_offset_and_an_agents_exception_raised_by_put(ours: bool) -> None:
    module = load(YOLO, ours)
    message, results = asyncio.run(asyncio.wait_for(module.test_bar(), 30))
    assert message == "boom"
    assert results == {0: "heyYOLO"}


def test_put_refuses_what_the_driver_cannot_do() -> None:
    module = load(YOLO, True)

    async def run() -> Any:
        async with module.bar.test_context() as agent:
            with pytest.raises(NotImplementedError, match="ask"):
                await agent.put("x", reply_to="somewhere")
        with pytest.raises(RuntimeError, match="outside"):
            await agent.put("x")

    asyncio.run(run())
