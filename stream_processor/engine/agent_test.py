"""Faust's ``agent.test_context()`` over the :class:`~stream_processor.engine.testing.TestDriver`: a Faust program's
own tests run with their import line changed.

.. code-block:: python

    async with order.test_context() as agent:
        event = await agent.put(Order(account_id="1", amount=1))   # processed to the end when put returns
        assert orders_for_account["1"] == 1                         # the table, read outside a record
        assert agent.results[0] == order                             # what it yielded (a sink-less agent: its input)

As faust-streaming 0.15.3's ``AgentTestWrapper`` (faust/agents/agent.py): :meth:`AgentTestWrapper.put` sends one
value (an object, encoded by the agent's topic as a producer would, or bytes) to the agent's input and waits until
it is processed; ``results`` maps 0, 1, 2, ... to the values the agent yielded, in order (for an agent that does
not yield, the values it took in); an exception the agent raised is raised by ``put``, as Faust's crashing
supervisor does; ``sent_offset``/``processed_offset`` count them. The agent runs in the engine's own task,
transactions and stores (``store='memory://'`` or not: the driver's tables are in memory), so everything it sends
is on the driver's topics (:attr:`AgentTestWrapper.driver`). The wrappers of one app share one driver while any is
open; it is closed with the last. Times: ``timestamp`` in seconds (Faust's), default the wall clock.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .events import Event, Message

if TYPE_CHECKING:
    from .agent import Agent
    from .testing import TestDriver

__all__ = ["AgentTestWrapper"]

_DRIVERS: dict[int, tuple[TestDriver, int]] = {}  # id(app) -> (its driver, how many wrappers hold it)


class AgentTestWrapper:
    """``agent.test_context()`` (see the module docstring). Raises what the agent raised from :meth:`put`."""

    def __init__(self, agent: Agent, **faust: Any) -> None:
        del faust  # channel=, supervisor_strategy=, on_error=: the engine's task runs the agent
        self.agent = agent
        self.results: dict[int, Any] = {}
        self.sent_offset = 0
        self.processed_offset = 0
        self._crash: BaseException | None = None
        self.driver: Any = None

    # ---- what the agent's driver reports (AgentDriver) ----------------------------------------------------------
    def on_value(self, value: Any) -> None:
        """A value the agent yielded (or, for an agent that does not yield, took in)."""
        self.results[self.processed_offset] = value
        self.processed_offset += 1

    def on_crash(self, exc: BaseException) -> None:
        """The agent raised ``exc`` while processing a record."""
        self._crash = exc

    # ---- the context ------------------------------------------------------------------------------------------
    async def __aenter__(self) -> AgentTestWrapper:
        from .testing import TestDriver

        app = self.agent.app
        driver, users = _DRIVERS.get(id(app), (None, 0))
        if driver is None:
            driver = TestDriver(app, start_ms=int(time.time() * 1000))
        _DRIVERS[id(app)] = (driver, users + 1)
        self.driver = driver
        self.agent.test_wrappers.append(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.agent.test_wrappers.remove(self)
        self.driver = None
        app = self.agent.app
        driver, users = _DRIVERS.pop(id(app))
        if users > 1:
            _DRIVERS[id(app)] = (driver, users - 1)
        else:
            driver.close()

    async def put(self, value: Any = None, key: Any = None, partition: int | None = None,
                  timestamp: float | None = None, headers: Any = None, key_serializer: Any = None,
                  value_serializer: Any = None, *, reply_to: Any = None, correlation_id: str | None = None,
                  wait: bool = True) -> Event:
        """Send ``value`` (``key``; ``partition``; ``timestamp`` in seconds, default now) to the agent's input and
        return its Event once it is processed. Raises what the agent raised; NotImplementedError for ``reply_to``
        (an ``ask``: use :meth:`Agent.ask <stream_processor.engine.channels.AgentChannel.ask>` on a worker) and for
        per-call serializers."""
        del wait  # the driver processes the record to the end before put returns
        if reply_to is not None or correlation_id is not None:
            raise NotImplementedError("test_context().put(reply_to=...): an ask is not offered under the test driver")
        if key_serializer is not None or value_serializer is not None:
            raise NotImplementedError("test_context().put(key_serializer=/value_serializer=): the agent's topic "
                                      "encodes the value, as its producer would")
        if self.driver is None:
            raise RuntimeError("put() outside `async with agent.test_context() as agent:`")
        seconds = time.time() if timestamp is None else timestamp
        ms = round(seconds * 1000)
        self.driver.now_ms = max(self.driver.now_ms, ms)
        topic = self.agent.topics[0]
        pairs = [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in (headers or {}).items()] \
            if isinstance(headers, dict) else list(headers or ())
        self._crash = None
        record = await self.driver.apipe(topic.name, value, key=key, timestamp=ms, partition=partition,
                                         headers=pairs)
        await self.driver.aflush()
        self.sent_offset += 1
        if self._crash is not None:
            crash, self._crash = self._crash, None
            raise crash
        decoded = topic.decode_value(record.value, record.key, ms) if isinstance(value, bytes) else value
        message = Message(topic.name, record.partition, record.offset, ms, record.key, record.value, pairs)
        return Event(key, decoded, pairs, message)
