#!/usr/bin/env bash
# run.sh: the placement planner benchmark (see BENCHMARKS.md). The planner alone, no controller: a
# deterministic synthetic site (5,000 hosts, 100,000 existing VMs) and a stream of 10,000 requests
# with mixed constraints (arch, site, firmware, zones, anti-affinity, volumes in pools, quotas,
# some migrations), fed to the indexed planner (`place`) alone, then to it and the naive planner
# (`place_naive`, every host scored) interleaved request by request. Prints a markdown table of
# decisions/s, p50, p99 and max per decision for each, and fails if the planners ever decide
# differently. Builds controller/placement/examples/placement_bench in release mode.
#
# Settings (environment):
#   BENCH_HOSTS=5000 BENCH_VMS=100000 BENCH_REQUESTS=10000   the site and the stream
#   BENCH_SEED=1               the synthetic site and stream (same seed, same site, same requests)
#   BENCH_PACK_PERCENT=25      requests planned with the pack strategy (the rest spread)
#   BENCH_MOVE_PERCENT=5       requests that migrate a placed VM instead of placing a new one
#   BENCH_OUT=FILE             also write the report (markdown) to FILE
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

BENCH_HOSTS=${BENCH_HOSTS:-5000}
BENCH_VMS=${BENCH_VMS:-100000}
BENCH_REQUESTS=${BENCH_REQUESTS:-10000}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_PACK_PERCENT=${BENCH_PACK_PERCENT:-25}
BENCH_MOVE_PERCENT=${BENCH_MOVE_PERCENT:-5}
for setting in BENCH_HOSTS BENCH_VMS BENCH_REQUESTS BENCH_SEED BENCH_PACK_PERCENT BENCH_MOVE_PERCENT; do
  [[ ${!setting} =~ ^[0-9]+$ ]] || die "$setting must be a number"
done
command -v cargo >/dev/null || die "cargo not found (install Rust with rustup; see README.md)"

echo "[bench] building placement_bench (release)" >&2
cargo build --release --locked -p hci-placement --example placement_bench >&2
BIN="$(cargo_target_dir)/release/examples/placement_bench"

report() {
  echo "## placement: the planner alone"
  echo
  echo "$(date -u +%Y-%m-%d), hci $(git describe --always --dirty 2>/dev/null || echo unknown), $(nproc) CPUs" \
    "($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), load average before:" \
    "$(cut -d ' ' -f 1-3 /proc/loadavg)"
  echo
  "$BIN" --hosts "$BENCH_HOSTS" --vms "$BENCH_VMS" --requests "$BENCH_REQUESTS" --seed "$BENCH_SEED" \
    --pack-percent "$BENCH_PACK_PERCENT" --move-percent "$BENCH_MOVE_PERCENT"
}

if [[ -n ${BENCH_OUT:-} ]]; then
  report | tee "$BENCH_OUT"
else
  report
fi
