#!/usr/bin/env bash
# bench/firewall/run.sh: the agent's firewall table (issue #5) at site scale, in a scratch network
# namespace: full atomic apply of the generated table (sets, nft -j) for BENCH_INTERFACES VM
# interfaces in BENCH_ZONES zones with BENCH_POLICIES policies, one VM's change (element edits) at
# several table sizes, and beside them a naive one-rule-per-interface table loaded with nft -f,
# all in the same run. Builds agent/examples/firewall_bench.rs in release. Run as root.
# Settings: BENCH_INTERFACES (10000), BENCH_ZONES (8), BENCH_POLICIES (20), BENCH_REPEAT (10),
# BENCH_OUT=FILE (also write the report there).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="${HOME:-/root}/.cargo/bin:$PATH"

[[ $EUID -eq 0 ]] || { echo "run as root (network namespaces, nft)" >&2; exit 1; }
command -v nft >/dev/null || ./scripts/install-deps.sh

cargo build --release -q -p hci-agent --example firewall_bench
bin=$(cargo build --release -q -p hci-agent --example firewall_bench --message-format=json |
  jq -r 'select(.reason == "compiler-artifact" and .target.name == "firewall_bench") | .executable // empty' | tail -n 1)

netns="hcibench-$$"
ip netns add "$netns"
trap 'ip netns del "$netns" 2>/dev/null || true' EXIT

report=$(mktemp)
{
  echo "== bench/firewall $(date -u +%Y-%m-%dT%H:%MZ), hci $(git rev-parse --short HEAD), $(nft --version), kernel $(uname -r)"
  echo "== load before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
  ip netns exec "$netns" "$bin"
} | tee "$report"
if [[ -n ${BENCH_OUT:-} ]]; then cp "$report" "$BENCH_OUT"; fi
rm -f "$report"
