#!/usr/bin/env bash
# Installs what the test suite needs (where this machine can) and runs it.
#
#   scripts/test.sh [extra cargo test arguments]
#
# Needs: a Rust toolchain, python3 with pip (the fake powermetrics used by the tests; the
# model fetch), visudo (Debian package `sudo`; macOS has it) for the sudoers setup script's
# tests, Chromium (Debian package `chromium`) for the HTML report's browser test, and
# Prometheus (Debian package `prometheus`) for the test that scrapes live metrics with it,
# and speedscope (fetched from the npm registry by scripts/fetch-speedscope.sh) for the
# test that opens a trace in it.
# On a Debian-like machine where we are root, missing packages are installed with apt-get;
# elsewhere the tests that need them say loudly that they are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
command -v visudo >/dev/null 2>&1 || [ -x /usr/sbin/visudo ] || need_apt+=(sudo)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/prometheus ] || need_apt+=(prometheus)

if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: installing ${need_apt[*]} with apt-get" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "test.sh: missing ${need_apt[*]}; install them for the full suite (the tests that need them will say they are skipped)" >&2
    fi
fi

# speedscope's web app, for the test that opens a trace in it (a pinned npm tarball).
if app="$(scripts/fetch-speedscope.sh)"; then
    export TRACING_ENERGY_TEST_SPEEDSCOPE="$app"
else
    echo "test.sh: speedscope could not be fetched; the test that opens a trace in it will say it is skipped" >&2
fi

exec cargo test "$@"
