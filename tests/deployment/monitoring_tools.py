"""The monitoring files' tools for the deployment tests: installing them, promtool, the dashboard validator, the
PromQL parse check of the dashboard, and a throwaway real Prometheus server.

Everything is installed by ``scripts/monitoring-tools.sh`` (Debian's ``prometheus`` package; TypeScript and
``@grafana/schema`` pinned by ``deployment/grafana/package-lock.json`` into ``.cache/tools/npm``); the tests call
:func:`require_tools` first, so a plain ``pytest`` works on a fresh machine, and fail (never skip) when the
install fails.

Also a command line, e.g. for CI or before committing a dashboard edit::

    python -m tests.deployment.monitoring_tools validate-dashboard [deployment/grafana/stream-processor.json]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = ROOT / "scripts" / "monitoring-tools.sh"
RENDER_SCRIPT = ROOT / "scripts" / "render-prometheusrule.py"
NPM_DIR = Path(os.environ.get("MONITORING_TOOLS_DIR", ROOT / ".cache" / "tools" / "npm"))
TSC = NPM_DIR / "node_modules" / ".bin" / "tsc"
PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")

ALERTS = ROOT / "deployment" / "prometheus" / "alerts.yaml"
ALERTS_TEST = ROOT / "deployment" / "prometheus" / "alerts.test.yaml"
PROMETHEUS_RULE = ROOT / "deployment" / "kubernetes" / "prometheusrule.yaml"
DASHBOARD = ROOT / "deployment" / "grafana" / "stream-processor.json"
DASHBOARD_TYPES = ROOT / "deployment" / "grafana" / "dashboard-types.ts"

#: The scrape job of the worker: the ServiceMonitor of Service kafka-streams (see alerts.yaml).
JOB = "kafka-streams"

#: Grafana's interval variables, replaced by a duration to parse a dashboard query as PromQL.
GRAFANA_DURATIONS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}

_installed: str | None = None


def install_tools() -> str:
    """Run scripts/monitoring-tools.sh once per process; its output. Raises RuntimeError when it fails."""
    global _installed
    if _installed is None:
        began = time.monotonic()
        done = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            raise RuntimeError(f"{INSTALL_SCRIPT} failed (status {done.returncode}):\n{done.stdout}\n{done.stderr}")
        for tool in (PROMETHEUS, PROMTOOL, TSC):
            if not os.access(tool, os.X_OK):
                raise RuntimeError(f"{INSTALL_SCRIPT} succeeded but {tool} is missing:\n{done.stdout}")
        _installed = f"{done.stdout}(in {time.monotonic() - began:.1f} s)"
    return _installed


def require_tools() -> str:
    """:func:`install_tools`, failing the calling test when the install fails."""
    try:
        return install_tools()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.fail(str(exc))


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``promtool ARGS`` (not checked: look at ``returncode``, ``stdout`` and ``stderr``)."""
    return subprocess.run([str(PROMTOOL), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


# ---------------------------------------------------------------------------------------------------- dashboard


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    return json.loads(path.read_text())


def validate_dashboards(dashboards: Sequence[dict[str, Any] | Path]) -> list[str]:
    """Type-check dashboards with ``tsc --strict`` against deployment/grafana/dashboard-types.ts (Grafana's own
    dashboard and panel types from @grafana/schema), all in one tsc run: tsc's errors for each, ``""`` when valid.

    Each JSON goes into the check as an object literal (``export const dashboard: T = <JSON>;``), not through a
    JSON import, so enum values, required keys and unknown keys are all checked. Raises RuntimeError when tsc
    fails for another reason (the types file itself, the install).
    """
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dashboard-check-", dir=NPM_DIR))  # node_modules is found upwards
    try:
        shutil.copy(DASHBOARD_TYPES, work / "dashboard-types.ts")
        files = []
        for i, dashboard in enumerate(dashboards):
            doc = load_dashboard(dashboard) if isinstance(dashboard, Path) else dashboard
            files.append(f"check_{i}.ts")
            (work / files[-1]).write_text(
                "import type { StreamProcessorDashboard } from './dashboard-types';\n"
                f"export const dashboard: StreamProcessorDashboard = {json.dumps(doc, indent=2, ensure_ascii=False)};\n"
            )
        (work / "tsconfig.json").write_text(json.dumps({
            "compilerOptions": {"strict": True, "noEmit": True, "module": "esnext", "moduleResolution": "bundler",
                                "target": "es2022", "types": [], "skipLibCheck": True, "noErrorTruncation": True},
            "files": files,
        }))
        done = subprocess.run([str(TSC), "-p", "tsconfig.json", "--pretty", "false"], cwd=work,
                              capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    errors = ["" for _ in dashboards]
    current: int | None = None
    stray = []
    for line in done.stdout.splitlines():
        if m := re.match(r"check_(\d+)\.ts\(", line):
            current = int(m.group(1))
        elif not line.startswith(" "):
            current = None
        if current is None:
            stray.append(line)
        else:
            errors[current] += line + "\n"
    if stray or (done.returncode != 0 and not any(errors)):
        raise RuntimeError(f"tsc failed (status {done.returncode}):\n{done.stdout}{done.stderr}")
    return errors


def validate_dashboard(dashboard: dict[str, Any] | Path = DASHBOARD) -> str:
    """:func:`validate_dashboards` of one dashboard: tsc's errors, ``""`` when valid."""
    return validate_dashboards([dashboard])[0]


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # a collapsed row's panels


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """Every PromQL expression of a dashboard as ``(where, expr)``: each panel target, and the series selector of
    each ``label_values(...)`` / ``query_result(...)`` template variable query."""
    found: list[tuple[str, str]] = []
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            if "expr" in target:
                found.append((f"panel {panel.get('title')!r} query {target.get('refId')}", target["expr"]))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        if m := re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_]\w*\s*\)\s*", text, re.S):
            found.append((f"variable {var.get('name')}", m.group(1)))
        elif m := re.fullmatch(r"\s*query_result\((.*)\)\s*", text, re.S):
            found.append((f"variable {var.get('name')}", m.group(1)))
        elif text.strip():
            found.append((f"variable {var.get('name')}", text))
    return found


def as_promql(expr: str) -> str:
    """A Grafana query as plain PromQL: interval variables become durations, other variables ``.*`` (they are
    only used inside regex label matchers in this dashboard)."""
    for var, duration in GRAFANA_DURATIONS.items():
        expr = expr.replace(var, duration)
    return re.sub(r"\$\{?[A-Za-z_]\w*(?::\w+)?\}?", ".*", expr)


def check_promql(exprs: list[str]) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` on a throwaway rule file with one recording rule per expression: parses each
    with this Prometheus version's PromQL parser. ``returncode`` 0: all parse."""
    rules = {"groups": [{"name": "dashboard-queries", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]}]}
    with tempfile.TemporaryDirectory(prefix="promql-check-") as tmp:
        path = Path(tmp) / "dashboard-queries.yaml"
        path.write_text(yaml.safe_dump(rules, sort_keys=False))
        return promtool("check", "rules", path)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (identifiers followed by ``{`` or ``[``, or bare in a function
    call), without function names, keywords and label names."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # no string contents
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for m in re.finditer(r"(?<![\w:.])([a-zA-Z_:][\w:]*)\s*(\(|\{|\[|\s|\)|$|,)", expr):
        name, follow = m.group(1), m.group(2)
        if follow == "(" or name in _PROMQL_WORDS or re.fullmatch(r"\d+[smhdwy]", name):
            continue
        names.add(name)
    return names


_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                 "group_right", "inf", "nan", "Inf", "NaN", "le"}


# ---------------------------------------------------------------------------------------------------- Prometheus


class PrometheusServer:
    """A real Prometheus (/usr/bin/prometheus) on a free loopback port with a temporary data folder."""

    def __init__(self, targets: list[str], job: str = JOB, scrape_interval: str = "1s",
                 rule_files: Sequence[Path] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="prometheus-test-"))
        self.log = self.dir / "prometheus.log"
        config = {
            "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                       "evaluation_interval": scrape_interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
        }
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(PROMETHEUS), f"--config.file={self.config}", f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
                 "--log.level=info"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 10 s) and delete its folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def wait_ready(self, http: aiohttp.ClientSession, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{self.url}/-/ready") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"prometheus not ready within {timeout} s:\n{self.log_tail()}")

    async def api(self, http: aiohttp.ClientSession, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the ``data`` of a successful answer, else AssertionError with Prometheus' error."""
        async with http.get(f"{self.url}/api/v1/{path}", params=params) as resp:
            body = await resp.json()
        assert body.get("status") == "success", f"/api/v1/{path} {params}: {body}"
        return body["data"]

    async def query(self, http: aiohttp.ClientSession, promql: str) -> list[dict[str, Any]]:
        """An instant query's vector result (``[{"metric": {...}, "value": [t, "v"]}, ...]``)."""
        data = await self.api(http, "query", query=promql)
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return result


@contextlib.asynccontextmanager
async def prometheus_server(targets: list[str], job: str = JOB, scrape_interval: str = "1s",
                            rule_files: Sequence[Path] = ()) -> AsyncIterator[tuple[PrometheusServer,
                                                                                 aiohttp.ClientSession]]:
    """Start a :class:`PrometheusServer` scraping ``targets``, wait until it is ready; stop it afterwards."""
    server = PrometheusServer(targets, job, scrape_interval, rule_files)
    server.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await server.wait_ready(http)
            yield server, http
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------------- command line


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] not in ("validate-dashboard", "install"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(install_tools())
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    if argv[0] == "install":
        return 0
    path = Path(argv[1]) if len(argv) > 1 else DASHBOARD
    errors = validate_dashboard(path)
    print(errors, end="")
    exprs = [as_promql(e) for _, e in dashboard_queries(load_dashboard(path))]
    parsed = check_promql(exprs)
    print(parsed.stdout + parsed.stderr, end="")
    ok = not errors and parsed.returncode == 0
    print(f"{path}: {'valid' if ok else 'INVALID'} ({len(exprs)} PromQL expressions)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
