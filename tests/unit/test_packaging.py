"""The package as a user installs it (a wheel, not this checkout): the market app's default configuration and
schemas are inside it, its entry points declare the market's processor types and the replay section, and its
metadata lists the runtime dependencies."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # 5 s on the 2-core machine: pip builds and installs a wheel
def test_an_installed_wheel_finds_its_default_config_without_the_checkout(tmp_path: Path) -> None:
    wheels, target, elsewhere, src = tmp_path / "wheels", tmp_path / "site", tmp_path / "cwd", tmp_path / "src"
    elsewhere.mkdir()
    # Built from a copy of what the distribution is made of: setuptools would also pack whatever a checkout's
    # build/lib still holds from an earlier build (files since moved or deleted).
    shutil.copytree(ROOT / "stream_processor", src / "stream_processor", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src), "-w", str(wheels)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("stream_processor-*.whl")
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    packaged = target / "stream_processor" / "market" / "streams-config.yaml"
    assert packaged.is_file() and not packaged.is_symlink()
    assert packaged.read_bytes() == (ROOT / "config" / "streams-config.yaml").read_bytes()
    # The market topics' JSON Schemas are package data too (stream_processor.market.schemas loads them from the
    # package).
    source = ROOT / "stream_processor"
    shipped = sorted(p.relative_to(source) for p in (source / "market" / "schemas").rglob("*.json"))
    assert shipped and all((target / "stream_processor" / p).read_bytes() == (source / p).read_bytes() for p in shipped)
    assert not (target / "stream_processor" / "schemas").exists()  # moved into the market package
    assert not (target / "stream_processor" / "market" / "processors" / "eos_check.py").exists()  # a test topology
    (info,) = target.glob("stream_processor-*.dist-info")
    entry_points = configparser.ConfigParser()
    entry_points.read(info / "entry_points.txt")
    assert dict(entry_points["stream_processor.processors"]) == {
        name: f"stream_processor.market.processors:{name.upper()}" for name in ("trades", "orderbook", "klines")}
    assert dict(entry_points["stream_processor.sections"]) == {
        "replay": "stream_processor.market.settings:ReplaySettings"}
    requires = [line.split(":", 1)[1].strip() for line in (info / "METADATA").read_text().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert {r.split(">")[0].split("<")[0].lower() for r in requires} == {
        "aiohttp", "aiokafka", "click", "croniter", "mode-streaming", "numpy", "orjson", "prometheus_client",
        "pydantic", "pyyaml", "rocksdict", "tqdm", "tzdata"}
    assert all(">=" in r for r in requires)

    # Run from another folder with the installed copy first on the path (the checkout's editable install after).
    code = (f"import sys; sys.path.insert(0, {str(target)!r}); import stream_processor.cli as cli; "
            "print(cli.__file__, file=sys.stderr); cli.main(['check-config'])")
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(str(target))  # the installed package ran, not this checkout
    settings = orjson.loads(done.stdout)
    assert set(settings["stream_processors"]) == {"trades", "orderbook", "klines"}
