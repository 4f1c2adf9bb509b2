"""worker --processes N: each child's identity and ports, the command it runs, restarts and the forwarded stop."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from stream_processor.engine import supervisor as sup
from stream_processor.engine.settings import load_settings
from stream_processor.market.settings import DEFAULT_CONFIG


def _settings(**kafka: object) -> object:
    base = load_settings(DEFAULT_CONFIG, environ={})
    doc = base.model_dump()
    doc["kafka"].update(kafka)
    doc["processor_id"] = "pod-a"
    return type(base).model_validate(doc)


def test_each_child_has_its_own_id_and_ports() -> None:
    settings = _settings()
    envs = [sup.child_environment(settings, i, {"KEEP": "1"}) for i in range(3)]
    assert [e["PROCESSOR_ID"] for e in envs] == ["pod-a-0", "pod-a-1", "pod-a-2"]
    assert [(e["METRICS_PORT"], e["HEALTH_CHECK_PORT"]) for e in envs] == [
        ("8080", "8081"), ("8082", "8083"), ("8084", "8085")]
    assert all(e["KEEP"] == "1" and "GROUP_INSTANCE_ID" not in e for e in envs)


def test_static_membership_ids_get_the_childs_index() -> None:
    env = sup.child_environment(_settings(group_instance_id="streams-0"), 1, {})
    assert env["GROUP_INSTANCE_ID"] == "streams-0-1"


def test_ports_that_would_collide_are_refused() -> None:
    settings = _settings()
    sup.check_ports(settings, 4)
    doc = settings.model_dump()
    doc["monitoring"].update(metrics_port=8080, health_check_port=8082)
    clash = type(settings).model_validate(doc)
    with pytest.raises(ValueError, match="distinct ports"):
        sup.check_ports(clash, 2)


def test_child_command_names_the_app_config_and_processors() -> None:
    command = sup.child_command("mymod:app", Path("c.yaml"), ["trades", "klines"])
    assert command == [sys.executable, "-m", "stream_processor", "-A", "mymod:app", "worker", "--config", "c.yaml",
                       "--processor", "trades", "--processor", "klines"]
    assert sup.child_command(None, None, []) == [sys.executable, "-m", "stream_processor", "worker"]


def test_a_child_that_exits_is_restarted_and_a_stop_reaches_every_child(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    monkeypatch.setattr(sup, "RESTART_FIRST_S", 0.05)
    marks = tmp_path / "starts"
    # Each child appends its PROCESSOR_ID, once its SIGTERM handler is in place; child 1 exits at once the first
    # time, child 0 waits for SIGTERM.
    script = (
        "import os, signal, sys\n"
        f"p = {str(marks)!r}\n"
        "me = os.environ['PROCESSOR_ID']\n"
        "first = not os.path.exists(p) or me not in open(p).read()\n"
        "if me.endswith('-1') and first: open(p, 'a').write(me + '\\n'); sys.exit(3)\n"
        "signal.signal(signal.SIGTERM, lambda *_: (open(p, 'a').write(me + ' stopped\\n'), sys.exit(0)))\n"
        "open(p, 'a').write(me + '\\n')\n"
        "while True: signal.pause()\n"
    )
    s = sup.Supervisor(_settings(), [sys.executable, "-c", script], 2, poll_s=0.02)
    seen: list[str] = []

    def stop_once_both_run() -> None:
        """Stop the supervisor once child 1 has restarted and both children run (10 s at most)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen[:] = marks.read_text().splitlines() if marks.exists() else []
            if seen.count("pod-a-1") == 2 and seen.count("pod-a-0") == 1:
                break
            time.sleep(0.02)  # the poll's interval
        s.request_stop()

    stopper = threading.Thread(target=stop_once_both_run, daemon=True)
    started = time.monotonic()
    stopper.start()
    assert s.run() == 0
    stopper.join()
    assert time.monotonic() - started < 10, f"child 1 not restarted with child 0 running within 10 s: {seen}"
    lines = marks.read_text().splitlines()
    assert lines.count("pod-a-1") == 2 and lines.count("pod-a-0") == 1
    assert s.restarts == 1
    assert sorted(line for line in lines if line.endswith("stopped")) == ["pod-a-0 stopped", "pod-a-1 stopped"]
    assert all(c is not None and c.returncode == 0 for c in s.children)


def test_at_least_one_process() -> None:
    with pytest.raises(ValueError):
        sup.Supervisor(_settings(), ["true"], 0)
