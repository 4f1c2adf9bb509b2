#!/usr/bin/env bash
# Installs the tools that check and test the monitoring files (deployment/prometheus, deployment/grafana):
#
#   - Debian's `prometheus` package: /usr/bin/prometheus (the real server the deployment tests scrape the worker
#     with) and /usr/bin/promtool (`check rules`, `test rules`). The package's service is never left running:
#     its postinst is kept from starting it (policy-rc.d) and it is disabled.
#   - the dashboard validator: TypeScript and @grafana/schema, pinned by deployment/grafana/package-lock.json,
#     installed with `npm ci` into .cache/tools/npm (git-ignored).
#
# Idempotent: a second run finds both and installs nothing (apt-get update runs only when apt does not know the
# package). Any failure stops the script with a non-zero status and a message naming what failed.
# Environment: MONITORING_TOOLS_DIR (default .cache/tools/npm).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NPM_DIR=${MONITORING_TOOLS_DIR:-$ROOT/.cache/tools/npm}
PINS=$ROOT/deployment/grafana

say() { echo "monitoring-tools.sh: $*"; }
die() { echo "monitoring-tools.sh: ERROR: $*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@" || die "'$*' needs root (sudo -n refused)"
    else die "'$*' needs root"
    fi
}

apt_install() {  # apt_install PACKAGE...: Debian packages, without recommends, no service started
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* yourself (Debian/Ubuntu packages)"
    local pkg known=1
    for pkg in "$@"; do
        apt-cache show "$pkg" >/dev/null 2>&1 || known=0
    done
    if [ "$known" = 0 ]; then
        say "apt-get update (apt does not know $*)"
        as_root apt-get update -q || die "apt-get update failed"
    fi
    # A package's postinst must not start its service: policy-rc.d answering 101 forbids it (invoke-rc.d and
    # deb-systemd-invoke both ask it). Use the machine's own one if it has one, else a temporary one.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [ ! -e "$policy" ]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        own_policy=1
    fi
    local rc=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" || rc=$?
    if [ "$own_policy" = 1 ]; then as_root rm -f "$policy"; fi
    [ "$rc" = 0 ] || die "apt-get install $* failed (status $rc)"
}

no_prometheus_service() {  # the package's service: disabled, and stopped if anything started it anyway
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    else
        if [ -x /etc/init.d/prometheus ]; then
            as_root /etc/init.d/prometheus stop >/dev/null 2>&1 || true
        fi
        if command -v update-rc.d >/dev/null 2>&1; then
            as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
        fi
    fi
    # The packaged service runs as user `prometheus`; anything of it still running is the package's doing.
    if pgrep -u prometheus -x prometheus >/dev/null 2>&1; then
        die "the prometheus package's service is running (pids: $(pgrep -u prometheus -x prometheus | tr '\n' ' '));" \
            "stop it: systemctl stop prometheus, or /etc/init.d/prometheus stop"
    fi
}

install_prometheus() {
    if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then
        say "prometheus: reusing $(/usr/bin/prometheus --version 2>&1 | head -n 1)"
        return
    fi
    say "installing Debian's prometheus package"
    apt_install prometheus
    no_prometheus_service
    [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] \
        || die "the prometheus package did not install /usr/bin/prometheus and /usr/bin/promtool"
    say "prometheus: installed $(/usr/bin/prometheus --version 2>&1 | head -n 1)"
}

install_validator() {
    [ -f "$PINS/package.json" ] && [ -f "$PINS/package-lock.json" ] \
        || die "$PINS/package.json or package-lock.json is missing"
    if ! command -v npm >/dev/null 2>&1; then
        say "npm not found: installing Debian's nodejs and npm"
        apt_install nodejs npm
    fi
    local want
    want=$(cat "$PINS/package.json" "$PINS/package-lock.json" | sha256sum | cut -d' ' -f1)
    if [ -f "$NPM_DIR/.installed" ] && [ "$(cat "$NPM_DIR/.installed")" = "$want" ] \
        && [ -x "$NPM_DIR/node_modules/.bin/tsc" ] && [ -f "$NPM_DIR/node_modules/@grafana/schema/package.json" ]; then
        say "dashboard validator: reusing $NPM_DIR"
        return
    fi
    say "installing the dashboard validator (npm ci) into $NPM_DIR"
    mkdir -p "$NPM_DIR"
    rm -f "$NPM_DIR/.installed"
    cp "$PINS/package.json" "$PINS/package-lock.json" "$NPM_DIR/"
    (cd "$NPM_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) \
        || die "npm ci in $NPM_DIR failed"
    "$NPM_DIR/node_modules/.bin/tsc" --version >/dev/null || die "tsc does not run after npm ci"
    echo "$want" > "$NPM_DIR/.installed"
    say "dashboard validator: typescript $("$NPM_DIR/node_modules/.bin/tsc" --version | cut -d' ' -f2)," \
        "@grafana/schema $(node -p "require('$NPM_DIR/node_modules/@grafana/schema/package.json').version")"
}

install_prometheus
install_validator
