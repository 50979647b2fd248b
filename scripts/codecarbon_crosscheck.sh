#!/usr/bin/env bash
# Runs the CPU-time estimate under CodeCarbon 3.3.2 in process mode and prints both energies.
#
#   scripts/codecarbon_crosscheck.sh
#
# Optional: the Rust test `tests/estimate_codecarbon.rs` checks the same formula without
# Python. This script checks it against CodeCarbon itself. It creates a virtual environment
# (VENV, default target/codecarbon-venv) and installs codecarbon==3.3.2 from PyPI into it
# (about 40 packages), builds the test binary, then runs a Python program that starts an
# OfflineEmissionsTracker(tracking_mode="process", measure_power_secs=1) and, under it, the
# test `child_workload_for_the_codecarbon_script` as a child process: the child idles 2.5 s,
# burns every CPU for 2 s and one CPU for 2 s while our estimate samples it with the TDP
# CodeCarbon chose for this machine, and prints its energy. CodeCarbon counts the child's CPU
# time (its process mode follows children) and its Python parent's (small).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-target/codecarbon-venv}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet codecarbon==3.3.2
fi

exe=$(cargo test --no-run --test estimate_codecarbon --message-format=json 2>/dev/null \
    | "$VENV/bin/python" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["name"] == "estimate_codecarbon":
        print(m["executable"])')
[ -n "$exe" ] || { echo "could not build tests/estimate_codecarbon.rs" >&2; exit 1; }

"$VENV/bin/python" - "$exe" <<'PY'
import json, logging, os, subprocess, sys, time

from codecarbon import OfflineEmissionsTracker
from codecarbon.core.cpu import TDP

logging.getLogger("codecarbon").setLevel(logging.ERROR)
exe = sys.argv[1]
tdp = TDP().tdp  # what CodeCarbon's constant mode finds for this CPU
tracker = OfflineEmissionsTracker(
    country_iso_code="FRA",
    tracking_mode="process",
    measure_power_secs=1,
    save_to_file=False,
    log_level="error",
)
tracker.start()
t0 = time.time()
child = subprocess.Popen(
    [exe, "--exact", "child_workload_for_the_codecarbon_script", "--nocapture",
     "--test-threads=1"],
    env={**os.environ, "TRACING_ENERGY_CODECARBON_CHILD": str(tdp)},
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
)
ours = None
for line in child.stdout:
    # libtest prints "test NAME ... " before the test's own output, on the same line.
    if "{" in line:
        ours = json.loads(line[line.index("{"):])
        break
if ours is None:
    tracker.stop()
    sys.exit("the child printed no result")
time.sleep(1.5)  # one more CodeCarbon sample with the child alive
tracker.stop()
child.stdin.close()
child.wait()
cc_j = tracker.final_emissions_data.cpu_energy * 3.6e6
cpu_hw = [h for h in tracker._hardware if type(h).__name__ == "CPU"]
print(json.dumps({
    "codecarbon_version": "3.3.2",
    "codecarbon_cpu": repr(cpu_hw[0]) if cpu_hw else None,
    "codecarbon_tdp_w": tdp,
    "codecarbon_cpu_j": round(cc_j, 3),
    "tracked_s": round(time.time() - t0, 2),
    "child_cpu_s": round(ours["cpu_s"], 3),
    "estimate_same_tdp_j": round(ours["estimate_j"], 3),
    "ratio_estimate_to_codecarbon": round(ours["estimate_j"] / cc_j, 4),
    "estimate_default_j": round(ours["default_estimate_j"], 3),
    "default_method": ours["default_method"],
}, indent=2))
PY
