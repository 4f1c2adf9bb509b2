"""A throwaway real broker: scripts/kafka.sh on free loopback ports and a temporary data folder.

The release is ``KAFKA_VERSION`` (scripts/kafka.sh's default when unset), passed through to the script with the rest
of the environment; :func:`kafka_version` tells which one that is and :func:`broker_version` which one runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(ROOT / "scripts" / "kafka.sh")
_ENVIRONMENTS: dict[str, dict[str, str]] = {}  # bootstrap address -> kafka.sh environment of brokers we started


@functools.cache
def kafka_version() -> str:
    """The Apache Kafka release the tests run: ``KAFKA_VERSION``, else scripts/kafka.sh's default."""
    done = subprocess.run([SCRIPT, "version"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"kafka.sh version failed:\n{done.stderr}")
    return done.stdout.strip()


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
def broker(own: bool = False) -> Iterator[str]:
    """Yield the bootstrap address of a fresh single-node KRaft broker, stopped and deleted afterwards.

    ``TEST_KAFKA_BOOTSTRAP=host:port`` names a running broker to use instead, unless ``own`` (a test that stops
    or freezes its broker). Raises RuntimeError when the broker cannot be started or the named one does not answer.
    """
    given = None if own else os.environ.get("TEST_KAFKA_BOOTSTRAP")
    if given:
        if not answers(given):
            raise RuntimeError(f"TEST_KAFKA_BOOTSTRAP={given} does not answer")
        yield given
        return
    data = Path(tempfile.mkdtemp(prefix="kafka-test-"))
    port = free_port()
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(free_port()),
           "KAFKA_DATA_DIR": str(data)}
    script = SCRIPT
    started = subprocess.run([script, "up"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise RuntimeError(f"could not start a broker:\n{started.stdout}\n{started.stderr}")
    address = f"127.0.0.1:{port}"
    _ENVIRONMENTS[address] = env
    try:
        yield address
    finally:
        _ENVIRONMENTS.pop(address, None)
        subprocess.run([script, "down"], env=env, capture_output=True, text=True)
        shutil.rmtree(data, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class SecureBroker:
    """A broker started by :func:`secure_broker`: the address of each listener, the TLS files, the SCRAM user."""

    plaintext: str  # no authentication: inter-broker traffic and the tests' own admin use
    sasl_ssl: str  # SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN over TLS
    ssl: str  # TLS with a required client certificate (mTLS)
    sasl_plaintext: str  # SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN without TLS
    cafile: Path  # PEM CA that signed the broker's certificate (SAN IP:127.0.0.1, DNS:localhost) and the client's
    certfile: Path  # PEM client certificate for the SSL listener
    keyfile: Path  # its PEM private key (unencrypted)
    user: str  # the SCRAM and PLAIN user
    password: str
    data: Path


@contextlib.contextmanager
def secure_broker(user: str = "streams", password: str = "streams-test-secret") -> Iterator[SecureBroker]:
    """Yield a fresh single-node broker with SASL_SSL, SSL (mTLS) and SASL_PLAINTEXT listeners besides PLAINTEXT
    (``KAFKA_SECURITY=1 scripts/kafka.sh up`` on free ports and a temporary data folder); stopped and deleted
    afterwards. Always its own broker (``TEST_KAFKA_BOOTSTRAP`` is not used). Raises RuntimeError when it cannot be
    started.
    """
    data = Path(tempfile.mkdtemp(prefix="kafka-secure-test-"))
    ports = {name: free_port() for name in ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "KAFKA_SASL_SSL_PORT",
                                            "KAFKA_SSL_PORT", "KAFKA_SASL_PORT")}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "KAFKA_DATA_DIR": str(data),
           "KAFKA_SECURITY": "1", "KAFKA_SCRAM_USER": user, "KAFKA_SCRAM_PASSWORD": password}
    started = subprocess.run([SCRIPT, "up"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        subprocess.run([SCRIPT, "down"], env=env, capture_output=True, text=True)
        shutil.rmtree(data, ignore_errors=True)
        raise RuntimeError(f"could not start a secure broker:\n{started.stdout}\n{started.stderr}")
    tls = data / "tls"
    secure = SecureBroker(
        plaintext=f"127.0.0.1:{ports['KAFKA_PORT']}",
        sasl_ssl=f"127.0.0.1:{ports['KAFKA_SASL_SSL_PORT']}",
        ssl=f"127.0.0.1:{ports['KAFKA_SSL_PORT']}",
        sasl_plaintext=f"127.0.0.1:{ports['KAFKA_SASL_PORT']}",
        cafile=tls / "ca.crt", certfile=tls / "client.crt", keyfile=tls / "client.key",
        user=user, password=password, data=data,
    )
    _ENVIRONMENTS[secure.plaintext] = env
    try:
        yield secure
    finally:
        _ENVIRONMENTS.pop(secure.plaintext, None)
        subprocess.run([SCRIPT, "down"], env=env, capture_output=True, text=True)
        shutil.rmtree(data, ignore_errors=True)


def restart(address: str) -> float:
    """Stop the broker at ``address`` (one this module started) and start it again on the same data.

    Returns the seconds it was down. Raises RuntimeError for a broker given by ``TEST_KAFKA_BOOTSTRAP`` or
    when ``kafka.sh`` fails.
    """
    env = _ENVIRONMENTS.get(address)
    if env is None:
        raise RuntimeError(f"{address} was not started by tests.broker.broker(); cannot restart it")
    for action in ("down", "up"):
        done = subprocess.run([SCRIPT, action], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"kafka.sh {action} failed:\n{done.stdout}\n{done.stderr}")
        if action == "down":
            stopped = time.monotonic()
    return time.monotonic() - stopped


def _env(address: str) -> dict[str, str]:
    env = _ENVIRONMENTS.get(address)
    if env is None:
        raise RuntimeError(f"{address} was not started by tests.broker.broker()")
    return env


def is_ours(address: str) -> bool:
    """True for a broker this module started (and so can stop, restart and read the logs of)."""
    return address in _ENVIRONMENTS


def data_dir(address: str) -> Path:
    """The data folder of the broker at ``address`` (one this module started)."""
    return Path(_env(address)["KAFKA_DATA_DIR"])


def broker_version(address: str) -> str:
    """The release the broker at ``address`` (one this module started) runs, as it logged it at start."""
    log = data_dir(address) / "logs" / "server.log"
    found = re.findall(r"INFO Kafka version: (\S+) \(org\.apache\.kafka\.common\.utils\.AppInfoParser\)",
                       log.read_text(errors="replace"))
    if not found:
        raise RuntimeError(f"{log} does not say which Kafka version runs")
    return found[-1]


def pid(address: str) -> int:
    """The process id of the broker at ``address`` (one this module started)."""
    return int((data_dir(address) / "broker.pid").read_text())


def kill9(address: str) -> None:
    """``kill -9`` the broker at ``address`` (one this module started); :func:`start` brings it back."""
    subprocess.run([SCRIPT, "kill"], env=_env(address), capture_output=True, text=True, check=True)


def start(address: str) -> float:
    """Start the broker at ``address`` again on its data; returns the seconds until it answered."""
    began = time.monotonic()
    done = subprocess.run([SCRIPT, "up"], env=_env(address), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"kafka.sh up failed:\n{done.stdout}\n{done.stderr}")
    return time.monotonic() - began
