"""The package as a user installs it (a wheel, not this checkout): the default configuration is inside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]


def test_an_installed_wheel_finds_its_default_config_without_the_checkout(tmp_path: Path) -> None:
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "cwd"
    elsewhere.mkdir()
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(wheels)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("stream_processor-*.whl")
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    packaged = target / "stream_processor" / "market" / "streams-config.yaml"
    assert packaged.is_file() and not packaged.is_symlink()
    assert packaged.read_bytes() == (ROOT / "config" / "streams-config.yaml").read_bytes()
    # The topics' JSON Schemas are package data too (stream_processor.schemas loads them from the package).
    source = ROOT / "stream_processor"
    shipped = sorted(p.relative_to(source) for p in (source / "schemas").rglob("*.json"))
    assert shipped and all((target / "stream_processor" / p).read_bytes() == (source / p).read_bytes() for p in shipped)

    # Run from another folder with the installed copy first on the path (the checkout's editable install after).
    code = (f"import sys; sys.path.insert(0, {str(target)!r}); import stream_processor.cli as cli; "
            "print(cli.__file__, file=sys.stderr); cli.main(['check-config'])")
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(str(target))  # the installed package ran, not this checkout
    settings = orjson.loads(done.stdout)
    assert set(settings["stream_processors"]) == {"trades", "orderbook", "klines"}
