"""Shared fixtures: the real data folder and a real Kafka broker (started by scripts/kafka.sh)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
FEEDS = SHARED_DATA / "feeds" / "binance-hftbacktest"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; its absence fails the test (CI always has it)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data folder {SHARED_DATA} is missing (set SHARED_DATA)")
    return SHARED_DATA


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real broker.

    ``TEST_KAFKA_BOOTSTRAP`` names a running one; otherwise a fresh single-node KRaft broker is started
    with ``scripts/kafka.sh`` on free loopback ports and a temporary data folder, and stopped at the end.
    A broker that cannot be reached or started fails the tests that need it; they never skip.
    """
    given = os.environ.get("TEST_KAFKA_BOOTSTRAP")
    if given:
        host, _, port = given.rpartition(":")
        if not _answers(host, int(port)):
            pytest.fail(f"TEST_KAFKA_BOOTSTRAP={given} does not answer")
        yield given
        return
    data = Path(tempfile.mkdtemp(prefix="kafka-test-"))
    port = _free_port()
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(_free_port()),
           "KAFKA_DATA_DIR": str(data)}
    script = str(ROOT / "scripts" / "kafka.sh")
    started = subprocess.run([script, "up"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"could not start the test broker:\n{started.stdout}\n{started.stderr}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([script, "down"], env=env, capture_output=True, text=True)
        shutil.rmtree(data, ignore_errors=True)
