"""The ``stream-processor`` command: worker, replay, topics, tail, check-config, and the app's own commands.

``-A module:attribute`` names the :class:`~stream_processor.engine.app.App` to run (Faust's ``faust -A app
worker`` habit); without it, the market application (:mod:`stream_processor.market.app`), whose configuration is
the packaged market YAML. ``--config`` names another configuration file for the app. ``App.main()`` runs this
command line with its app (``python app.py worker -l info``). Faust's worker options ``-l/--loglevel`` (also before
the subcommand, as Faust takes it), ``-p/--web-port`` and ``-b/--web-bind`` are taken; a Faust subcommand not
offered here (``send``, ``tables``, ...) stops with an error naming it and why (:data:`FAUST_COMMANDS`).

``option`` and ``argument`` are click's, for ``@app.command(option(...))`` (Faust's ``faust.cli.option``).
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

option = click.option
argument = click.argument

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


#: Faust's subcommands (faust/cli/) not offered here -> why.
FAUST_COMMANDS = {
    "send": "send a record with a producer of your own (kcat, or an @app.command that awaits topic.send)",
    "tables": "a table is in its changelog topic: read it with `stream-processor -A app tail <app_id>-<agent>-...`",
    "agents": "the worker's start line and /status list the agents and their topics",
    "model": "Records are Python classes: read their fields in the code",
    "models": "Records are Python classes: read their fields in the code",
    "reset": "reset a group's offsets with kafka-consumer-groups --reset-offsets (its changelog is the state)",
    "clean-versions": "there is no local table directory per version to clean: state is rebuilt from changelogs",
    "livecheck": "faust.livecheck is not offered",
    "completion": "click's shell completion: _STREAM_PROCESSOR_COMPLETE=bash_source stream-processor",
}
LOGLEVELS = {"crit": "CRITICAL", "critical": "CRITICAL", "error": "ERROR", "warn": "WARNING", "warning": "WARNING",
             "info": "INFO", "debug": "DEBUG"}


class AppGroup(click.Group):
    """The command group: the built-in commands, then the app's ``@app.command`` functions; a Faust subcommand not
    offered here is a usage error naming it (:data:`FAUST_COMMANDS`)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        commands = _app_commands(ctx)
        found = commands.get(cmd_name) or commands.get(cmd_name.replace("_", "-"))
        if found is not None:
            return found
        faust = FAUST_COMMANDS.get(cmd_name.replace("_", "-"))
        if faust is not None:
            raise click.UsageError(f"Faust's {cmd_name!r} command is not offered here: {faust}. Commands: "
                                   f"{', '.join(self.list_commands(ctx))}", ctx)
        return None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *sorted(_app_commands(ctx))]


def _app_commands(ctx: click.Context) -> dict[str, click.Command]:
    obj = ctx.find_root().obj
    if obj is not None and not isinstance(obj, dict):
        return dict(getattr(obj, "commands", {}))
    spec = ctx.find_root().params.get("app_spec")
    return dict(getattr(load_app(spec), "commands", {})) if spec else {}


def _loglevel(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    level = LOGLEVELS.get(value.lower())
    if level is None:
        raise click.BadParameter(f"{value!r} is not one of {', '.join(sorted(LOGLEVELS))}")
    return level


loglevel_option = click.option("-l", "--loglevel", default=None, callback=_loglevel, metavar="LEVEL",
                               help="Log level (Faust's: crit, error, warn, info, debug; case-insensitive); wins "
                                    "over LOG_LEVEL and the YAML.")


def _app(ctx: click.Context, config_path: Path | None) -> Any:
    obj = ctx.find_root().obj
    app = obj if not isinstance(obj, dict) else load_app(obj.get("app") or DEFAULT_APP)
    if config_path is not None:
        app.config = config_path
        app._settings = None  # noqa: SLF001 - loaded again from the file named on the command line
    return app


def _settings(config_path: Path | None, ctx: click.Context | None = None,
              monitoring: dict[str, Any] | None = None) -> Settings:
    """The app's settings (exit 2 with one line on an error), with ``monitoring`` keys the command line gives (and
    ``-l`` given before the subcommand) replacing theirs; logging configured from them."""
    ctx = ctx or click.get_current_context()
    try:
        settings: Settings = _app(ctx, config_path).settings
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    except ValueError as exc:
        click.echo(f"app error: {exc}", err=True)
        sys.exit(2)
    root_level = ctx.find_root().params.get("loglevel")
    update = {k: v for k, v in {"log_level": root_level, **(monitoring or {})}.items() if v is not None}
    if update:
        settings = settings.model_copy(update={"monitoring": settings.monitoring.model_copy(update=update)})
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


@click.group(cls=AppGroup)
@click.version_option(__version__, "--version", prog_name=DISTRIBUTION, message="%(prog)s %(version)s")
@click.option("-A", "--app", "app_spec", default=None, metavar="MODULE:APP",
              help=f"The App to run (default {DEFAULT_APP}).")
@loglevel_option
@click.pass_context
def main(ctx: click.Context, app_spec: str | None, loglevel: str | None) -> None:
    """Exactly-once stream processing on Kafka: agents, tables and the market processors."""
    if ctx.obj is None or isinstance(ctx.obj, dict):
        ctx.obj = {"app": app_spec}


@main.command()
@config_option
@click.option("--processor", "processors", multiple=True, help="Run only this processor (repeatable).")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes to run, one per core: each a member of the groups, on ports metrics_port + 2i "
                   "and health_check_port + 2i.")
@loglevel_option
@click.option("-p", "--web-port", type=click.IntRange(0, 65535), default=None,
              help="Port of the worker's web server (/health, /ready, /status): Faust's --web-port; wins over "
                   "HEALTH_CHECK_PORT, the YAML and App(web_port=).")
@click.option("-b", "--web-bind", default=None, help="Address the web servers listen on (monitoring.host).")
@click.pass_context
def worker(ctx: click.Context, config_path: Path | None, processors: tuple[str, ...], processes: int,
           loglevel: str | None, web_port: int | None, web_bind: str | None) -> None:
    """Run the app's agents and the configured processors until SIGTERM or SIGINT."""
    from .engine.worker import Worker

    given = {"log_level": loglevel, "health_check_port": web_port, "host": web_bind}
    settings = _settings(config_path, ctx, {k: v for k, v in given.items() if v is not None})
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
    app = _app(ctx, None)
    app._settings = settings  # noqa: SLF001 - the command line's ports and level, for the app's services too
    worker = Worker(settings, list(processors) or None, app=app)
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
