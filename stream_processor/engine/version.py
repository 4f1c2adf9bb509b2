"""The installed distribution's version (pyproject.toml's), for ``--version``, logs and ``stream_processor_info``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stream-processor")
except PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "unknown"
