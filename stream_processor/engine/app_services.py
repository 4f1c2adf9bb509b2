"""What an App runs beside its agents in a worker: timers, tasks, leader election; and its signals, commands, pages.

:func:`run_services` is the App's part of a worker's life (``App.run_timers``): it logs the App() settings that have
no effect here and the registrations not served (once, at start), starts leader election when an ``on_leader`` timer
or task needs it (:mod:`~stream_processor.engine.leader`), runs every ``@app.task`` once and every timer until the
worker stops; the ``@app.service`` services (mode's ``Service``, as Faust's) start before them and stop after them.
Everything here runs outside any partition's transaction: what it sends goes out at least once
(:meth:`~stream_processor.engine.topic.Topic.send` through the app's idempotent producer).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger(__name__)

#: Faust's App signals (faust/app/base.py). ``connect`` is accepted; the receivers are not called (the worker logs
#: them at start): this engine's rebalances and configuration steps are not Faust's.
SIGNALS = ("on_before_configured", "on_after_configured", "on_configured", "on_partitions_assigned",
           "on_partitions_revoked", "on_rebalance_complete", "on_rebalance_start", "on_rebalance_return",
           "on_worker_init", "on_produce_message")


@dataclass
class Signal:
    """A Faust App signal (``@app.on_rebalance_complete.connect``): keeps its receivers; see :data:`SIGNALS`."""

    name: str
    receivers: list[Callable[..., Any]] = field(default_factory=list)

    def connect(self, fun: Callable[..., Any] | None = None, **_: Any) -> Any:
        """Register ``fun`` (a decorator, with or without arguments, as mode's ``Signal.connect``)."""
        if fun is None:
            return self.connect
        self.receivers.append(fun)
        return fun


@dataclass
class AppTask:
    """An ``@app.task``: run once when the worker starts (``on_leader``: once this worker first leads)."""

    name: str
    fun: Callable[..., Any]
    on_leader: bool


@dataclass
class Page:
    """An ``@app.page`` view: an ``async def view(web, request, **match_info)`` served by :func:`page_routes`;
    ``route``: ``"table"``/``"topic"`` when it is a ``table_route``/``topic_route`` view (answered 501)."""

    path: str
    fun: Any
    name: str
    route: str | None = None


class PageWeb:
    """The first argument of a page view (Faust's View): builds aiohttp responses (``json``, ``text``, ``html``,
    ``bytes``, ``notfound``, ``error``) as faust.web.base.Web does."""

    def json(self, value: Any, *, status: int = 200, headers: Any = None, **_: Any) -> Any:
        """A JSON response of ``value`` (orjson: Records and datetimes as the engine encodes them)."""
        from aiohttp import web

        from .processor import encode_value

        return web.Response(body=encode_value(value), status=status, headers=headers,
                            content_type="application/json")

    def text(self, value: str, *, status: int = 200, content_type: str = "text/plain", **_: Any) -> Any:
        """A text response."""
        from aiohttp import web

        return web.Response(text=value, status=status, content_type=content_type)

    def html(self, value: str, *, status: int = 200, **_: Any) -> Any:
        """An HTML response."""
        return self.text(value, status=status, content_type="text/html")

    def bytes(self, value: bytes, *, status: int = 200, content_type: str = "application/octet-stream",
              **_: Any) -> Any:
        """A response of raw bytes."""
        from aiohttp import web

        return web.Response(body=value, status=status, content_type=content_type)

    def notfound(self, reason: str = "Not Found", **_: Any) -> Any:
        """404 with ``{"error": reason}``."""
        return self.error(404, reason)

    def error(self, status: int, reason: str, **_: Any) -> Any:
        """``status`` with ``{"error": reason}``."""
        return self.json({"error": reason}, status=status)


ROUTED = ("a {kind}_route view is not offered: Faust forwards the request to the worker holding the key's partition; "
          "here a table is read only inside its partition's task (read its changelog topic instead)")


def page_routes(app: App) -> list[Any]:
    """aiohttp routes of ``app``'s pages (any method), for the worker's web server; marks them served. A view
    answers what it returns; a ``table_route``/``topic_route`` view answers 501 with :data:`ROUTED`."""
    from aiohttp import web

    webs = PageWeb()
    routes = []
    for page in app.pages:
        async def handle(request: web.Request, page: Page = page) -> Any:
            if page.route is not None:
                return webs.error(501, ROUTED.format(kind=page.route))
            return await page.fun(webs, request, **request.match_info)

        routes.append(web.route("*", page.path, handle, name=page.name))
    app.pages_served = True
    return routes


class CommandContext:
    """The ``self`` an ``@app.command`` function gets (Faust passes its AppCommand): ``app`` and ``say``."""

    def __init__(self, app: App) -> None:
        self.app = app

    def say(self, message: Any, **_: Any) -> None:
        """Print ``message`` to stdout (Faust's ``AppCommand.say``)."""
        click.echo(str(message))


def click_command(app: App, fun: Callable[..., Any], options: tuple[Any, ...], name: str | None) -> click.Command:
    """The click command of an ``@app.command(*options)`` async function (as faust.cli.base.AppCommand.from_handler:
    a function taking parameters gets the command object, :class:`CommandContext`, first; the options' values as
    keywords). Raises TypeError when ``fun`` is not an ``async def``."""
    if not inspect.iscoroutinefunction(fun):
        raise TypeError(f"app.command {fun.__name__}: must be an async def function")
    takes_self = bool(inspect.signature(fun).parameters)

    def callback(**kwargs: Any) -> None:
        args = (CommandContext(app),) if takes_self else ()
        asyncio.run(_closing(app, fun(*args, **kwargs)))

    command: Callable[..., Any] = callback
    for option in reversed(options):
        command = option(command)
    return click.command(name or fun.__name__.replace("_", "-"), help=fun.__doc__)(command)


async def _closing(app: App, coro: Any) -> Any:
    try:
        return await coro
    finally:
        await app.close()


async def _call(app: App, fun: Callable[..., Any]) -> Any:
    """``fun(app)`` when it takes a parameter, else ``fun()`` (faust.app.base.App._task)."""
    return await (fun(app) if inspect.signature(fun).parameters else fun())


def _startup_notes(app: App) -> None:
    note = app.conf.inert_note()
    if note:
        log.info("%s", note)
    for signal in app.signals.values():
        if signal.receivers:
            log.warning("app.%s has %d receiver(s) (%s): not called here (this engine's rebalances and start-up are "
                        "not Faust's; use a processor's init/close or an @app.task)", signal.name,
                        len(signal.receivers), ", ".join(getattr(f, "__name__", repr(f)) for f in signal.receivers))
    faust_style = app.config is None and app.settings_doc is None  # built from Faust's arguments alone
    for agent in app.agents.values() if faust_style else ():
        topics = [sink.name for sink in agent.sinks if hasattr(sink, "encode_value")]
        if topics:
            log.warning("agent %s yields to %s: each value is keyed like the input record it came from (Faust sends "
                        "a yielded value without a key); for no key, `await topic.send(value=...)` in the agent",
                        agent.name, ", ".join(topics))
    for page in app.pages if not app.pages_served else ():
        log.warning("app.page %s (%s) is registered but not served: the worker's web server serves /health, /ready, "
                    "/status and /metrics only", page.path, page.name)


STREAM_OUTSIDE_AGENT = ("a stream outside an agent (app.stream, topic.stream) is not offered: its records would "
                        "belong to no partition's task, so nothing it did could commit with its offsets; iterate the "
                        "topic in an @app.agent(topic) instead")


def routed(kind: str) -> Callable[[Any], Any]:
    """``app.table_route``/``topic_route``: marks the view, which :meth:`App.page` (stacked above it) reads."""
    def mark(fun: Any) -> Any:
        fun._sp_route = kind  # noqa: SLF001
        return fun

    return mark


class FlowControl:
    """Faust's ``app.flow_control`` (what its test fixtures resume): here nothing is held back, so ``resume`` and
    ``suspend`` change only what ``is_active`` says."""

    def __init__(self) -> None:
        self.active = True

    def resume(self) -> None:
        self.active = True

    def suspend(self) -> None:
        self.active = False

    def is_active(self) -> bool:
        return self.active


def cron_delay(cron_format: str, tz: Any) -> Callable[[], float]:
    """The seconds from the engine's wall clock to the next time of ``cron_format`` in ``tz`` (croniter), for
    ``app.crontab``. Raises ValueError for a malformed expression."""
    import datetime as dt

    from croniter import croniter

    from . import processor

    if not croniter.is_valid(cron_format):
        raise ValueError(f"not a cron expression: {cron_format!r}")

    def delay() -> float:
        now = dt.datetime.fromtimestamp(processor.wall_clock_ms() / 1000, tz)
        following: dt.datetime = croniter(cron_format, now).get_next(dt.datetime)
        return max(0.0, (following - now).total_seconds())

    return delay


def fun_name(fun: Any) -> str:
    """The name of a function, or of the function a ``functools.partial`` wraps (Faust takes partials as agents
    and timers)."""
    while isinstance(fun, functools.partial):
        fun = fun.func
    return str(getattr(fun, "__name__", None) or repr(fun))


async def _start_services(app: App) -> list[Any]:
    """Start every ``@app.service`` (a mode Service class, instantiated here, or an instance), in order, as Faust
    starts them with the app; returns the running instances."""
    running: list[Any] = []
    for service in app.services:
        instance: Any = service() if inspect.isclass(service) else service
        await instance.start()
        running.append(instance)
    return running


async def _stop_services(running: list[Any]) -> None:
    for instance in reversed(running):
        try:
            await instance.stop()
        except Exception:  # noqa: BLE001 - one service failing to stop does not keep the others running
            log.exception("app.service %r failed to stop", instance)


async def run_services(app: App, stopping: asyncio.Event) -> None:
    """Run ``app``'s services, its tasks once and its timers until ``stopping`` is set (see the module docstring).
    Raises what a service's ``start`` raised (the worker does not run without it, as Faust's)."""
    from .leader import LeaderElector

    _startup_notes(app)
    services = await _start_services(app)
    elector = LeaderElector(app.settings) if app.needs_leader else None
    app.elector = elector
    jobs = [asyncio.create_task(elector.run(stopping), name="leader")] if elector is not None else []
    jobs += [asyncio.create_task(_run_task(app, t, stopping), name=f"task-{t.name}") for t in app.tasks]
    jobs += [asyncio.create_task(_timer_loop(*t, stopping), name=f"timer-{t[0]}") for t in app.timers]
    try:
        await stopping.wait()
    finally:
        for job in jobs:
            job.cancel()
        for job in jobs:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job
        if elector is not None:
            await elector.close()
        app.elector = None
        await _stop_services(services)


async def _run_task(app: App, task: AppTask, stopping: asyncio.Event) -> None:
    if task.on_leader:
        assert app.elector is not None
        waiting = asyncio.create_task(app.elector.became_leader.wait())
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait([waiting, stop], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        stop.cancel()
        if stopping.is_set():
            return
    try:
        await _call(app, task.fun)
    except Exception:  # noqa: BLE001 - a failing task is logged; the worker goes on (Faust crashes the app)
        log.exception("app.task %s failed", task.name)


async def _timer_loop(name: str, delay: Callable[[], float], fun: Callable[[], Any], stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        try:
            await asyncio.wait_for(stopping.wait(), delay())
            return
        except TimeoutError:
            pass
        try:
            await fun()
        except Exception:  # noqa: BLE001 - a failing timer is logged and tried again next time
            log.exception("timer %s failed", name)


def discover(autodiscover: Any, origin: str | None) -> None:
    """Import the modules of Faust's ``autodiscover`` (faust.app.base.App.discover): a list of module names, a
    callable returning one, or True (``origin``'s package); each package with its submodules, except tests
    (``test_*``, ``tests``) and ``__main__``. Raises ValueError for True without ``origin``, ImportError as
    importing raises it."""
    import importlib

    if not autodiscover:
        return
    if callable(autodiscover):
        autodiscover = autodiscover()
    if autodiscover is True:
        if not origin:
            raise ValueError("App(autodiscover=True) needs origin='your.package' (the package to import)")
        autodiscover = [origin]
    for name in autodiscover:
        _import_tree(importlib.import_module(name))


def _import_tree(package: Any) -> None:
    """Import ``package``'s submodules, recursively, skipping ``test*`` and ``__main__`` (not imported at all)."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(getattr(package, "__path__", [])):
        if info.name.startswith("test") or info.name == "__main__":
            continue
        _import_tree(importlib.import_module(f"{package.__name__}.{info.name}"))
