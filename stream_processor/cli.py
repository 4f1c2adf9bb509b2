"""The ``stream-processor`` command: worker, replay, topics, tail, check-config.

``-A module:attribute`` names the :class:`~stream_processor.engine.app.App` to run (Faust's ``faust -A app
worker`` habit); without it, the market application (:mod:`stream_processor.market.app`), whose configuration is
the packaged market YAML. ``--config`` names another configuration file for the app.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click
import orjson

from .engine.exceptions import ConfigError
from .engine.logs import configure as configure_logging
from .engine.settings import Settings
from .engine.version import __version__

DEFAULT_APP = "stream_processor.market.app:app"
DISTRIBUTION = "stream-processor"

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML configuration (default: the app's own: the market app's packaged streams-config.yaml, or none for "
         "an app without one); environment variables override it.",
)


def load_app(spec: str) -> Any:
    """The App named by ``module:attribute`` (``module`` alone: its ``app``). Raises click.UsageError."""
    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.UsageError(f"-A {spec}: cannot import {module_name!r}: {exc}") from None
    app = getattr(module, attribute or "app", None)
    if app is None:
        raise click.UsageError(f"-A {spec}: {module_name} has no attribute {attribute or 'app'!r}")
    return app


def _app(ctx: click.Context, config_path: Path | None) -> Any:
    obj = ctx.find_root().obj
    app = obj if not isinstance(obj, dict) else load_app(obj.get("app") or DEFAULT_APP)
    if config_path is not None:
        app.config = config_path
        app._settings = None  # noqa: SLF001 - loaded again from the file named on the command line
    return app


def _settings(config_path: Path | None, ctx: click.Context | None = None) -> Settings:
    ctx = ctx or click.get_current_context()
    try:
        settings = _app(ctx, config_path).settings
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    except ValueError as exc:
        click.echo(f"app error: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings.monitoring.log_level, fmt=settings.monitoring.log_format)
    return settings


def _run[T](command: str, settings: Settings, coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``; a Kafka error (broker unreachable, authentication refused) ends the command with one
    line on stderr and exit code 1 rather than a traceback."""
    from aiokafka.errors import KafkaError

    from .engine.security import auth_failure

    try:
        return asyncio.run(coro)
    except KafkaError as exc:
        reason = auth_failure(exc, settings.kafka) or str(exc) or type(exc).__name__
        click.echo(f"{command}: Kafka at {','.join(settings.kafka.bootstrap_servers)}: {reason}", err=True)
        sys.exit(1)


@click.group()
@click.version_option(__version__, "--version", prog_name=DISTRIBUTION, message="%(prog)s %(version)s")
@click.option("-A", "--app", "app_spec", default=None, metavar="MODULE:APP",
              help=f"The App to run (default {DEFAULT_APP}).")
@click.pass_context
def main(ctx: click.Context, app_spec: str | None) -> None:
    """Exactly-once stream processing on Kafka: agents, tables and the market processors."""
    if ctx.obj is None or isinstance(ctx.obj, dict):
        ctx.obj = {"app": app_spec}


@main.command()
@config_option
@click.option("--processor", "processors", multiple=True, help="Run only this processor (repeatable).")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes to run, one per core: each a member of the groups, on ports metrics_port + 2i "
                   "and health_check_port + 2i.")
@click.pass_context
def worker(ctx: click.Context, config_path: Path | None, processors: tuple[str, ...], processes: int) -> None:
    """Run the app's agents and the configured processors until SIGTERM or SIGINT."""
    from .engine.worker import Worker

    settings = _settings(config_path, ctx)
    if processes > 1:
        from .engine.supervisor import Supervisor, check_ports, child_command

        try:
            check_ports(settings, processes)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        obj = ctx.find_root().obj
        if isinstance(obj, dict):
            command = child_command(obj.get("app"), config_path, processors)
        else:  # an App's own main(): the children run the same script, without --processes
            command = [sys.executable, *_without_processes(sys.argv)]
        sys.exit(Supervisor(settings, command, processes).run())
    worker = Worker(settings, list(processors) or None, app=_app(ctx, None))
    worker.hard_exit_s = settings.shutdown_timeout_ms / 1000 + 5
    asyncio.run(worker.run())


def _without_processes(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            out.append(arg)
    return out


@main.command()
@config_option
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, readable=False))
@click.option("--speed", default=0.0, show_default=True, help="Multiple of real time; 0 = as fast as possible.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Publish at most this many messages.")
@click.option("--only", type=click.Choice(["trades", "orderbook", "klines"]), multiple=True,
              help="Publish only these message families (repeatable).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def replay(config_path: Path | None, files: tuple[str, ...], speed: float, limit: int | None,
           only: tuple[str, ...], no_progress: bool) -> None:
    """Publish recorded feed files to the raw topics, keyed by symbol.

    The progress bar (on stderr) shows the share of the files read, or of --limit; a file that cannot be read or a
    line that is not '<local_receive_time_ns> <json>' stops the replay with one line naming the file and the line
    (exit code 1)."""
    from .market.replay import ReplayError
    from .market.replay import replay as run_replay

    settings = _settings(config_path)
    try:
        counts = _run("replay", settings, run_replay(
            settings, files, speed=speed, limit=limit, kinds=set(only) or None, progress=not no_progress,
        ))
    except ReplayError as exc:
        n = exc.published
        after = f" ({n} message{'' if n == 1 else 's'} published before it)" if n else ""
        click.echo(f"replay: {exc}{after}", err=True)
        sys.exit(1)
    total = sum(counts.values())
    click.echo(f"published {total} messages: " + ", ".join(f"{t}={n}" for t, n in sorted(counts.items())))


@main.command()
@config_option
@click.pass_context
def topics(ctx: click.Context, config_path: Path | None) -> None:
    """Create every topic the app's worker needs (existing ones are left as they are)."""
    from .engine.topics import ensure_topics
    from .engine.worker import Worker

    settings = _settings(config_path, ctx)
    needed = Worker(settings, app=_app(ctx, None)).topics  # what the worker creates: its processors' and the app's
    created = _run("topics", settings, ensure_topics(settings, needed))
    click.echo(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ""))


@main.command()
@config_option
@click.argument("topic")
@click.option("-n", "count", type=click.IntRange(min=1), default=10, show_default=True,
              help="Print the last N committed records (N >= 1).")
def tail(config_path: Path | None, topic: str, count: int) -> None:
    """Print the last N committed (read_committed) records of TOPIC as JSON lines: partition, offset, timestamp
    (ms), key, headers and value."""
    from .engine.tail import TopicNotFoundError, tail_topic

    settings = _settings(config_path)
    try:
        records = _run("tail", settings, tail_topic(settings, topic, count))
    except TopicNotFoundError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    for record in records:
        click.echo(orjson.dumps(record).decode())


@main.command("check-config")
@config_option
def check_config(config_path: Path | None) -> None:
    """Validate the configuration and print it."""
    settings = _settings(config_path)
    click.echo(orjson.dumps(settings.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode())
