#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the powermetrics stream splitter and
# plist reader.
#
#   scripts/fuzz.sh [TARGET] [SECONDS] [-- extra libFuzzer flags]
#
# TARGET: powermetrics_stream (default) or plist_document (see fuzz/fuzz_targets/).
# SECONDS: how long to fuzz, default 600. It runs
#   cargo +nightly fuzz run TARGET fuzz/corpus/TARGET fuzz/seeds/powermetrics_stream \
#       -- -max_total_time=SECONDS
# after copying the committed seeds into fuzz/corpus/TARGET (ignored by git), where new
# inputs are kept between runs. Crashing inputs land in fuzz/artifacts/TARGET/; a crash
# makes this script exit non-zero. Reproduce one with
#   cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...
#
# Needs the nightly toolchain (rustup toolchain install nightly) and cargo-fuzz
# (cargo install cargo-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:-powermetrics_stream}
secs=${2:-600}
shift $(($# < 2 ? $# : 2))
[ "${1:-}" = "--" ] && shift

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is missing; install it with: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing; install it with: cargo install cargo-fuzz" >&2
    exit 2
fi
if [ ! -f "fuzz/fuzz_targets/$target.rs" ]; then
    echo "fuzz.sh: no target '$target'; the targets are: $(cd fuzz/fuzz_targets && ls ./*.rs | sed 's|^\./||; s|\.rs$||' | tr '\n' ' ')" >&2
    exit 2
fi
case $secs in '' | *[!0-9]*)
    echo "fuzz.sh: SECONDS must be a whole number, not '$secs'" >&2
    exit 2
    ;;
esac

seeds=fuzz/seeds/powermetrics_stream
corpus=fuzz/corpus/$target
mkdir -p "$corpus" "fuzz/artifacts/$target"
cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
# More real captures, whose licences allow reading but not copying them into this
# repository: into the (ignored) corpus, when ../shared is beside the checkout.
shared=../shared/fixtures/powermetrics
if [ -d "$shared" ]; then
    cp -n "$shared"/*.plist "$corpus"/ 2>/dev/null || true
fi
log=fuzz/artifacts/$target/last-run.log

start=$(date +%s)
set +e
cargo +nightly fuzz run "$target" "$corpus" "$seeds" -- -max_total_time="$secs" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
wall=$(($(date +%s) - start))

# libFuzzer's last status line: "#RUNS DONE cov: C ft: F corp: N/SIZE ... exec/s: E ..."
last=$(grep -E '^#[0-9]+[[:space:]]+(DONE|NEW|REDUCE|pulse|INITED)' "$log" | tail -n 1 || true)
field() { sed -nE "s|.*[[:space:]]$1:?[[:space:]]+([^[:space:]]+).*|\1|p" <<<"$last"; }
runs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
crashes=$(grep -c 'Test unit written to' "$log" || true)
echo "fuzz.sh: $target: ${runs:-?} runs in ${wall} s wall, exec/s $(field exec/s), cov $(field cov), ft $(field ft), corpus $(field corp) ($(find "$corpus" -type f | wc -l) files in $corpus), crashes ${crashes}, exit ${status}"
if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    echo "fuzz.sh: FAILED; see $log and fuzz/artifacts/$target/" >&2
    exit 1
fi
