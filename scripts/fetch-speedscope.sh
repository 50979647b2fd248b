#!/usr/bin/env bash
# Puts speedscope (MIT; the npm package's built web app, 2 MB) where the test that opens a
# Chrome trace in it (tests/report_speedscope.rs) finds it:
#
#   scripts/fetch-speedscope.sh [DIR]
#
# DIR defaults to ${CARGO_TARGET_DIR:-target}/speedscope-VERSION. The package's tarball is
# downloaded from the npm registry (no node or npm needed), checked against the SHA-512 the
# registry publishes for it (pinned below) and unpacked; the app is then
# DIR/package/dist/release/index.html, which the script prints. Idempotent: an unpacked
# copy is kept. Needs python3 and network access to registry.npmjs.org.
set -euo pipefail

VERSION="1.25.0"
URL="https://registry.npmjs.org/speedscope/-/speedscope-${VERSION}.tgz"
SHA512="cpf9HWTZf1ijLXBJrk87Ve/54tnYx6rlf0gUThvn3ook6h63hLXVOQiMf44PT+XoV503cPfvfiT5gP5vojp6Ag=="

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-${ROOT}/target}"
case "$target" in /*) ;; *) target="${ROOT}/${target}" ;; esac
DEST="${1:-${target}/speedscope-${VERSION}}"
APP="${DEST}/package/dist/release"

if [ ! -f "${APP}/index.html" ]; then
    mkdir -p "$DEST"
    python3 - "$URL" "$SHA512" "$DEST" <<'PY'
import base64, hashlib, io, sys, tarfile, urllib.request
url, sha512, dest = sys.argv[1:]
try:
    data = urllib.request.urlopen(url, timeout=60).read()
except OSError as e:
    sys.exit(f"fetch-speedscope: error: downloading {url} failed ({e}). Fix: check access to the npm registry, or unpack the package into {dest} by hand")
got = base64.b64encode(hashlib.sha512(data).digest()).decode()
if got != sha512:
    sys.exit(f"fetch-speedscope: error: {url} has SHA-512 {got}, not the pinned {sha512}. Fix: check the download; update the pin only for a new version")
with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
    try:
        tar.extractall(dest, filter="data")
    except TypeError:  # Python before 3.11.4 has no extraction filters
        tar.extractall(dest)
PY
fi
echo "$APP"
