"""A throwaway real broker for benchmarks: scripts/kafka.sh on free loopback ports and a temporary folder."""

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """Yield the bootstrap address of a fresh broker (or of ``BENCH_KAFKA_BOOTSTRAP`` if set)."""
    given = os.environ.get("BENCH_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    data = Path(tempfile.mkdtemp(prefix="kafka-bench-"))
    port = _free_port()
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(_free_port()),
           "KAFKA_DATA_DIR": str(data)}
    script = str(ROOT / "scripts" / "kafka.sh")
    subprocess.run([script, "up"], env=env, check=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([script, "down"], env=env, check=False)
        shutil.rmtree(data, ignore_errors=True)
