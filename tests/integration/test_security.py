"""Authentication and TLS against a real broker (``KAFKA_SECURITY=1 scripts/kafka.sh``, one for the module).

The worker runs the trades processor exactly-once through each secure listener (SASL_SSL with SCRAM-SHA-512,
SCRAM-SHA-256 and PLAIN, SASL_PLAINTEXT with SCRAM-SHA-256, SSL with a client certificate): topics are created,
transactions and offsets commit, every trade comes out once. Refusals (no client certificate, an untrusted CA, a
wrong password) are told apart from an unreachable broker, and the password never reaches a log or
``check-config``'s output. The test's own reads go through the PLAINTEXT listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError

from stream_processor.engine.kafka_internals import force_metadata_update
from stream_processor.engine.security import auth_failure, client_options, diagnose
from stream_processor.engine.settings import Settings, load_settings
from stream_processor.engine.worker import Worker
from stream_processor.market.replay import replay
from stream_processor.market.settings import DEFAULT_CONFIG
from tests.broker import SecureBroker, secure_broker
from tests.conftest import FEEDS
from tests.helpers import isolated_settings, read_topic, wait_for

TRADES = 300
FEED = FEEDS / "spot" / "btcusdt_20240808.gz"


@pytest.fixture(scope="module")
def secure() -> Iterator[SecureBroker]:
    """One secure broker for the module; a broker that cannot start fails the tests (never skips them)."""
    with contextlib.ExitStack() as stack:
        try:
            broker = stack.enter_context(secure_broker())
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield broker


def secure_settings(broker: SecureBroker, protocol: str, *, mechanism: str | None = None,
                    password: str | None = None, via: str = "file", folder: Path | None = None,
                    client_cert: bool = True, cafile: Path | None = None) -> Settings:
    """Isolated settings of the trades processor on ``broker``'s ``protocol`` listener.

    The SASL password comes from a file in ``folder`` (``via="file"``) or from environment KAFKA_SASL_PASSWORD
    through ``load_settings`` (``via="env"``).
    """
    address = {"SASL_SSL": broker.sasl_ssl, "SSL": broker.ssl, "SASL_PLAINTEXT": broker.sasl_plaintext}[protocol]
    kafka: dict[str, Any] = {"security_protocol": protocol}
    if protocol.endswith("SSL"):
        kafka["ssl_cafile"] = cafile or broker.cafile
    if protocol == "SSL" and client_cert:
        kafka.update(ssl_certfile=broker.certfile, ssl_keyfile=broker.keyfile)
    password = broker.password if password is None else password
    if protocol.startswith("SASL_"):
        kafka.update(sasl_mechanism=mechanism, sasl_username=broker.user)
        if via == "file":
            assert folder is not None
            path = folder / "sasl-password"
            path.write_text(password + "\n")
            kafka["sasl_password_file"] = path
    if via == "file" or not protocol.startswith("SASL_"):
        return isolated_settings(address, processors=["trades"], **kafka)
    doc = isolated_settings(address, processors=["trades"]).model_dump()
    for secret in ("sasl_password", "ssl_key_password"):  # dumped as None; the document may not name secrets
        doc["kafka"].pop(secret)
    doc["kafka"].update(kafka)
    return load_settings(DEFAULT_CONFIG, environ={"KAFKA_SASL_PASSWORD": password}, doc=doc)


async def committed_everything(bootstrap: str, group: str, topic: str) -> bool:
    """True when ``group`` has committed the end offset of every non-empty partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await force_metadata_update(consumer)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(tps)
        committed = {tp: await consumer.committed(tp) for tp, end in ends.items() if end}
        return bool(committed) and all(committed[tp] == ends[tp] for tp in committed)
    finally:
        await consumer.stop()


async def get_health(worker: Worker) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{worker.health_port}/health") as resp:
            return resp.status, await resp.json()


CASES = [
    pytest.param("SASL_SSL", "SCRAM-SHA-512", "file", id="sasl_ssl-scram512-password_file"),
    pytest.param("SASL_SSL", "SCRAM-SHA-256", "env", id="sasl_ssl-scram256-password_env"),
    pytest.param("SASL_SSL", "PLAIN", "file", id="sasl_ssl-plain-password_file"),
    pytest.param("SASL_PLAINTEXT", "SCRAM-SHA-256", "env", id="sasl_plaintext-scram256-password_env"),
    pytest.param("SSL", None, None, id="ssl-mtls"),
]


@pytest.mark.parametrize(("protocol", "mechanism", "via"), CASES)
async def test_trades_exactly_once_through_a_secure_listener(secure: SecureBroker, shared_data: Path, tmp_path: Path,
                                                             protocol: str, mechanism: str | None,
                                                             via: str | None) -> None:
    settings = secure_settings(secure, protocol, mechanism=mechanism, via=via or "file", folder=tmp_path)
    proc = settings.stream_processors["trades"]
    raw, enriched = proc.input_topics[0], proc.output_topics[0]

    counts = await replay(settings, [FEED], kinds={"trades"}, limit=TRADES, progress=False)  # creates raw, secure
    assert counts[raw] == TRADES

    worker = Worker(settings)
    task = asyncio.create_task(worker.run())
    last: list[Any] = []
    try:
        async def done() -> bool:
            assert not task.done(), task.exception()
            if worker.health_port is not None:
                last[:] = await get_health(worker)
            return await committed_everything(secure.plaintext, proc.consumer_group, raw)

        try:
            await wait_for(done, timeout=45)
        except TimeoutError:
            pytest.fail(f"the worker did not commit every input within 45 s; /health: {last}")
        status, health = await get_health(worker)
        assert status == 200 and health["healthy"] and not health["problems"], health  # the probe got in, too
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, timeout=30)

    inputs = await read_topic(secure.plaintext, raw)
    outputs = await read_topic(secure.plaintext, enriched)  # read_committed
    sources = [(v["source_topic"], v["source_partition"], v["source_offset"])
               for v in (orjson.loads(m.value) for m in outputs)]
    assert len(sources) == len(set(sources)) == TRADES
    assert set(sources) == {(m.topic, m.partition, m.offset) for m in inputs}


async def test_mtls_without_a_client_certificate_is_refused(secure: SecureBroker) -> None:
    settings = secure_settings(secure, "SSL", client_cert=False)
    admin = AIOKafkaAdminClient(**client_options(settings.kafka), request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError) as refused:  # aiokafka says only "Unable to bootstrap from ..."
        await admin.start()
    await admin.close()
    assert auth_failure(refused.value, settings.kafka) is None  # bootstrap() keeps no cause to classify
    options = client_options(settings.kafka)
    host, _, port = options.pop("bootstrap_servers")[0].rpartition(":")
    with pytest.raises(KafkaConnectionError) as closed:  # one direct connection keeps it: the broker's TLS alert
        await create_conn(host, int(port), request_timeout_ms=5000, **options)
    message = auth_failure(closed.value, settings.kafka)
    assert message is not None and message.startswith("TLS failed"), (message, repr(closed.value.__cause__))
    assert await diagnose(settings.kafka) == message


async def test_an_untrusted_broker_certificate_is_refused(secure: SecureBroker, tmp_path: Path) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other CA",
                    "-keyout", str(tmp_path / "other.key"), "-out", str(tmp_path / "other.crt")],
                   check=True, capture_output=True)
    settings = secure_settings(secure, "SASL_SSL", mechanism="SCRAM-SHA-512", via="env",
                               cafile=tmp_path / "other.crt")
    message = await diagnose(settings.kafka)
    assert message is not None and "not trusted" in message, message


async def test_a_wrong_password_makes_health_unhealthy_without_stopping_the_worker(
    secure: SecureBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = f"wrong-{secrets.token_hex(8)}"
    settings = secure_settings(secure, "SASL_SSL", mechanism="SCRAM-SHA-512", password=wrong, via="env")
    worker = Worker(settings)
    task = asyncio.create_task(worker.run())
    seen: list[tuple[float, int, Any]] = []
    began = time.monotonic()
    try:
        async def reported() -> bool:
            assert not task.done(), task.exception()  # neither crashed nor exited
            if worker.health_port is None:
                return False
            status, health = await get_health(worker)
            seen.append((round(time.monotonic() - began, 1), status, health["problems"]))
            return status == 503 and any("authentication failed" in p for p in health["problems"])

        try:
            await wait_for(reported, timeout=15)
        except TimeoutError:
            pytest.fail(f"/health did not report the authentication failure within 15 s; it answered: {seen[-3:]}")
        # Still running, and still trying: the broker probe fails once more (its next round, every 2 s).
        refusals = len(_refusals(caplog))

        async def tried_again() -> bool:
            assert not task.done(), task.exception()
            return len(_refusals(caplog)) > refusals

        await wait_for(tried_again, timeout=15, message="another logged authentication failure of the broker probe")
        assert not task.done()
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, timeout=30)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert wrong not in logged and secure.password not in logged


def _refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The broker probe's log records of the broker refusing the worker's credentials (one per probe round)."""
    return [r for r in caplog.records
            if r.levelno >= logging.ERROR and r.getMessage().startswith("broker ") and "authentication failed" in
            r.getMessage()]


def test_check_config_never_prints_the_password(tmp_path: Path, secure: SecureBroker) -> None:
    secret = f"some-secret-{secrets.token_hex(6)}"
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    doc["kafka"].update(bootstrap_servers=[secure.sasl_ssl], security_protocol="SASL_SSL",
                        sasl_mechanism="SCRAM-SHA-512", sasl_username=secure.user, ssl_cafile=str(secure.cafile))
    config = tmp_path / "streams-config.yaml"
    config.write_text(yaml.safe_dump(doc))
    command = Path(sys.executable).parent / "stream-processor"
    done = subprocess.run([str(command), "check-config", "--config", str(config)], capture_output=True, text=True,
                          env={**os.environ, "KAFKA_SASL_PASSWORD": secret, "LOG_LEVEL": "DEBUG"}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout and secret not in done.stderr
    printed = orjson.loads(done.stdout[done.stdout.index("{"):])
    assert printed["kafka"]["sasl_password"] not in (None, "")  # shown as set, masked
    assert printed["kafka"]["security_protocol"] == "SASL_SSL"
