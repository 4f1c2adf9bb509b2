"""The worker's start line: version and a configuration summary, never a secret."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import orjson

from stream_processor.engine.logs import JsonFormatter
from stream_processor.engine.settings import load_settings
from stream_processor.engine.version import __version__
from stream_processor.engine.worker import Worker
from stream_processor.market.settings import DEFAULT_CONFIG


def test_the_summary_names_version_brokers_and_processors_but_no_password(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret-value\n")
    settings = load_settings(DEFAULT_CONFIG, environ={
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "streams", "KAFKA_SASL_PASSWORD_FILE": str(password)})
    summary = Worker(settings).summary()
    assert summary["version"] == __version__ and summary["security_protocol"] == "SASL_PLAINTEXT"
    assert summary["sasl_username"] == "streams"
    assert [p["name"] for p in summary["processors"]] == ["trades", "orderbook", "klines"]
    assert summary["processors"][2]["outputs"] == ["enriched_klines", "smc_signals", "alerts", "smc_context",
                                                   "volume_profile"]  # its params name the last two
    assert b"s3cret" not in orjson.dumps(summary)


def test_a_json_log_line_carries_the_summary() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test_worker.start_line")  # its own logger: the root handlers stay as they are
    logger.addHandler(handler)
    logger.propagate = False
    try:
        summary = Worker(load_settings(DEFAULT_CONFIG, environ={})).summary()
        logger.warning("starting", extra={"config": summary})
    finally:
        logger.removeHandler(handler)
    line = orjson.loads(stream.getvalue().strip())
    assert line["message"] == "starting" and line["config"]["processors"][0]["type"] == "trades"
