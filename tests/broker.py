"""A throwaway real broker: scripts/kafka.sh on free loopback ports and a temporary data folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(address: str) -> bool:
    """True if something accepts TCP connections at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """Yield the bootstrap address of a fresh single-node KRaft broker, stopped and deleted afterwards.

    ``TEST_KAFKA_BOOTSTRAP=host:port`` names a running broker to use instead. Raises RuntimeError when the
    broker cannot be started or the named one does not answer.
    """
    given = os.environ.get("TEST_KAFKA_BOOTSTRAP")
    if given:
        if not answers(given):
            raise RuntimeError(f"TEST_KAFKA_BOOTSTRAP={given} does not answer")
        yield given
        return
    data = Path(tempfile.mkdtemp(prefix="kafka-test-"))
    port = free_port()
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(free_port()),
           "KAFKA_DATA_DIR": str(data)}
    script = str(ROOT / "scripts" / "kafka.sh")
    started = subprocess.run([script, "up"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise RuntimeError(f"could not start a broker:\n{started.stdout}\n{started.stderr}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([script, "down"], env=env, capture_output=True, text=True)
        shutil.rmtree(data, ignore_errors=True)
