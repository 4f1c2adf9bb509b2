"""The broker the tests run against is the release they were asked for (``KAFKA_VERSION``, scripts/kafka.sh's default
when unset), so that a run against the wrong broker cannot pass silently; and its logging is configured (Kafka 4.0
moved from log4j 1 to log4j2, and a missing configuration shows up as errors on the broker's stdout)."""

from __future__ import annotations

import re
from pathlib import Path

from aiokafka.conn import create_conn
from aiokafka.protocol.admin import ApiVersionRequest

from tests.broker import broker_version, data_dir, is_ours, kafka_version, pid

FETCH = 1  # api key


async def api_versions(address: str) -> dict[int, tuple[int, int]]:
    """ApiVersions of the broker at ``address``: api key -> (min version, max version)."""
    host, _, port = address.rpartition(":")
    conn = await create_conn(host, int(port))
    try:
        response = await conn.send(ApiVersionRequest())
    finally:
        conn.close()
    assert response.error_code == 0, response
    return {key: (low, high) for key, low, high in response.api_versions}


async def test_broker_runs_the_selected_kafka_version(kafka_bootstrap: str) -> None:
    expected = kafka_version()
    print(f"KAFKA_VERSION={expected}; broker at {kafka_bootstrap}")
    # Any broker, ours or TEST_KAFKA_BOOTSTRAP's: the major line, by what it accepts. Kafka 4.0 removed Fetch v0-v3
    # (KIP-896: 3.9 answers ApiVersions with Fetch 0-17, 4.1 with 4-18).
    fetch_min = (await api_versions(kafka_bootstrap))[FETCH][0]
    major = int(expected.split(".")[0])
    assert (fetch_min >= 4) == (major >= 4), (
        f"the broker's lowest Fetch version is {fetch_min}, so it is not a Kafka {major}.x broker; "
        "set KAFKA_VERSION to the release of TEST_KAFKA_BOOTSTRAP's broker")
    if not is_ours(kafka_bootstrap):
        return
    running = broker_version(kafka_bootstrap)
    print(f"the broker logged: Kafka version: {running}")
    assert running == expected
    classpath = Path(f"/proc/{pid(kafka_bootstrap)}/cmdline").read_bytes().split(b"\0")
    assert any(f"/{expected}/libs/".encode() in arg for arg in classpath), classpath
    logs = data_dir(kafka_bootstrap) / "logs"
    for name in ("format.log", "stdout.log"):
        trouble = [line for line in (logs / name).read_text(errors="replace").splitlines()
                   if re.search(r"^log4j:(WARN|ERROR)|StatusLogger|main ERROR|^SLF4J:", line)]
        assert not trouble, f"{name}: logging misconfigured: {trouble}"
    assert "Kafka Server started" in (logs / "server.log").read_text(errors="replace")
