"""The ``stream-processor`` command: worker, replay, topics, tail, check-config."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
import orjson

from .exceptions import ConfigError
from .logs import configure as configure_logging
from .settings import DEFAULT_CONFIG, Settings, load_settings

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="YAML configuration; environment variables override it.",
)


def _settings(config_path: Path) -> Settings:
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings.monitoring.log_level)
    return settings


@click.group()
def main() -> None:
    """Market-data stream processor: raw Kafka topics in, enriched topics out, exactly once."""


@main.command()
@config_option
@click.option("--processor", "processors", multiple=True, help="Run only this processor (repeatable).")
def worker(config_path: Path, processors: tuple[str, ...]) -> None:
    """Run the configured processors until SIGTERM or SIGINT."""
    from .worker import Worker

    settings = _settings(config_path)
    worker = Worker(settings, list(processors) or None)
    worker.hard_exit_s = settings.shutdown_timeout_ms / 1000 + 5
    asyncio.run(worker.run())


@main.command()
@config_option
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--speed", default=0.0, show_default=True, help="Multiple of real time; 0 = as fast as possible.")
@click.option("--limit", type=int, default=None, help="Publish at most this many messages.")
@click.option("--only", type=click.Choice(["trades", "orderbook", "klines"]), multiple=True,
              help="Publish only these message families (repeatable).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def replay(config_path: Path, files: tuple[str, ...], speed: float, limit: int | None,
           only: tuple[str, ...], no_progress: bool) -> None:
    """Publish recorded feed files to the raw topics, keyed by symbol."""
    from .replay import replay as run_replay

    settings = _settings(config_path)
    counts = asyncio.run(
        run_replay(settings, files, speed=speed, limit=limit, kinds=set(only) or None, progress=not no_progress)
    )
    total = sum(counts.values())
    click.echo(f"published {total} messages: " + ", ".join(f"{t}={n}" for t, n in sorted(counts.items())))


@main.command()
@config_option
def topics(config_path: Path) -> None:
    """Create every topic the configuration needs (existing ones are left as they are)."""
    from .topics import ensure_topics, required_topics

    settings = _settings(config_path)
    created = asyncio.run(ensure_topics(settings, required_topics(settings)))
    click.echo(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ""))


@main.command()
@config_option
@click.argument("topic")
@click.option("-n", "count", default=10, show_default=True, help="Print the last N committed records.")
def tail(config_path: Path, topic: str, count: int) -> None:
    """Print the last N committed (read_committed) records of TOPIC as JSON lines."""
    from .tail import tail_topic

    settings = _settings(config_path)
    for record in asyncio.run(tail_topic(settings, topic, count)):
        click.echo(orjson.dumps(record).decode())


@main.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Validate the configuration and print it."""
    settings = _settings(config_path)
    click.echo(orjson.dumps(settings.model_dump(), option=orjson.OPT_INDENT_2).decode())
