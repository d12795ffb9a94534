#!/usr/bin/env bash
# Make this checkout ready to run: server binaries (Debian packages), .venv, kwatt installed in it.
#
#   scripts/bootstrap.sh [--for demo|test] [--venv-only] [--no-venv]
#
#   --for demo   mosquitto + influxd (what `kwatt demo` starts)
#   --for test   the same plus what the tests run (TEST_NEEDS below); default
#   --venv-only  skip the server binaries (lint and type checks need only the venv)
#   --no-venv    only the binaries (tests/system/test_bootstrap.py runs the script this way)
#
# As root, missing packages are installed with apt-get (services kept from auto-starting); as any
# other user the script prints the sudo command to run and exits 1. Idempotent, needs no stdin,
# and does nothing but a few checks when everything is already there. Env: PYTHON (default python3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODE=test
SERVERS_ONLY=false
usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --for)
            [ $# -ge 2 ] || { echo "bootstrap: --for needs demo or test" >&2; exit 2; }
            MODE=$2; shift 2 ;;
        --for=*) MODE=${1#--for=}; shift ;;
        --venv-only) MODE=venv; shift ;;
        --no-venv) SERVERS_ONLY=true; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "bootstrap: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

# binary:package pairs. Only the packages of binaries that are not found are installed: a machine
# whose Node.js comes from NodeSource has `node` and `npm` from one package (nodejs), and Debian's
# `npm` package conflicts with it, so asking apt for a package whose binary is already there breaks.
DEMO_NEEDS=(mosquitto:mosquitto influxd:influxdb)
TEST_NEEDS=("${DEMO_NEEDS[@]}"
    mosquitto_pub:mosquitto-clients                    # delivery tests read the broker with it
    victoria-metrics:victoria-metrics                  # the /api/v2/write target of the tests
    systemd-analyze:systemd                            # `systemd-analyze verify` of the units
    node:nodejs npm:npm                                # the Grafana dashboard schema check
    cc:gcc                                             # builds the emulated libnvidia-ml.so.1
    prometheus-node-exporter:prometheus-node-exporter  # judges the emulated hwmon/RAPL trees
    tmux:tmux                                          # drives `kwatt top` at 80 x 50
    strace:strace                                      # counts a poll's system calls (bench)
    unshare:util-linux                                 # private mount namespaces (vendor wheels)
    faketime:faketime                                  # an agent whose clock is off (clock tests)
)
SERVERS=true
VENV_STEPS=true
case "$MODE" in
    demo) NEEDS=("${DEMO_NEEDS[@]}") ;;
    test) NEEDS=("${TEST_NEEDS[@]}") ;;
    venv) NEEDS=(); SERVERS=false ;;
    *) echo "bootstrap: --for must be demo or test, not '$MODE'" >&2; exit 2 ;;
esac
$SERVERS_ONLY && VENV_STEPS=false

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.kwatt-installed
IS_ROOT=false
[ "$(id -u)" -eq 0 ] && IS_ROOT=true

log() { echo "bootstrap: $*" >&2; }

# mosquitto is in /usr/sbin, which is not on a normal user's PATH
have_binary() {
    local p d
    # (bash's command -v may name a non-executable file when nothing executable matches)
    p=$(command -v "$1" 2>/dev/null) && [ -f "$p" ] && [ -x "$p" ] && return 0
    for d in /usr/local/sbin /usr/sbin /sbin; do
        [ -x "$d/$1" ] && return 0
    done
    return 1
}

# ---------------------------------------------------------------- apt (root only)

APT_UPDATED=false
POLICY=/usr/sbin/policy-rc.d
POLICY_CREATED=false

remove_policy() {
    if $POLICY_CREATED; then
        rm -f "$POLICY"
        POLICY_CREATED=false
    fi
}
trap remove_policy EXIT

apt_install() {
    if ! $APT_UPDATED; then
        log "apt-get update"
        apt-get update -q </dev/null
        APT_UPDATED=true
    fi
    # Keep the packages' init scripts from starting system-wide servers on the default ports
    # (1883, 8086, 8088...): invoke-rc.d asks policy-rc.d, and exit status 101 means "forbidden".
    if [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\n# temporary, created by kwatt scripts/bootstrap.sh\nexit 101\n' >"$POLICY"
        chmod 755 "$POLICY"
        POLICY_CREATED=true
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" </dev/null
    remove_policy
}

# ---------------------------------------------------------------- (a) server binaries

missing=()
packages=()
for pair in "${NEEDS[@]}"; do
    b=${pair%%:*}
    pkg=${pair#*:}
    have_binary "$b" && continue
    missing+=("$b")
    case " ${packages[*]} " in *" $pkg "*) ;; *) packages+=("$pkg") ;; esac
done
if [ ${#missing[@]} -gt 0 ]; then
    if $IS_ROOT; then
        log "missing: ${missing[*]}"
        apt_install "${packages[@]}"
        still=()
        for b in "${missing[@]}"; do have_binary "$b" || still+=("$b"); done
        if [ ${#still[@]} -gt 0 ]; then
            log "still missing after apt-get install ${packages[*]}: ${still[*]}"
            exit 1
        fi
    else
        log "missing: ${missing[*]} (needed for --for $MODE). Install them with:"
        echo "sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${packages[*]}" >&2
        exit 1
    fi
fi
$VENV_STEPS || exit 0

# ---------------------------------------------------------------- (b) .venv

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    log "$PYTHON not found; kwatt needs Python >= 3.11 (Debian bookworm: apt-get install -y python3 python3-venv)"
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    log "$("$PYTHON" -V 2>&1) is too old; kwatt needs Python >= 3.11 (set PYTHON=/path/to/python3.11)"
    exit 1
fi

if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
    if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        if $IS_ROOT; then
            apt_install python3-venv
        else
            log "$PYTHON cannot create virtual environments (no ensurepip). Install it with:"
            echo "sudo apt-get update && sudo apt-get install -y python3-venv" >&2
            exit 1
        fi
    fi
    if [ -e "$VENV" ]; then
        log "$VENV is broken or too old: recreating it"
        "$PYTHON" -m venv --clear "$VENV"
    else
        log "creating $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
fi

# ---------------------------------------------------------------- (c) kwatt + dev tools

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    log "pip install -e '.[dev]' into $VENV"
    PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install -q -e '.[dev]' </dev/null
    touch "$STAMP"
fi
