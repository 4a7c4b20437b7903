#!/usr/bin/env bash
# run.sh: placements/s end to end (see BENCHMARKS.md). A 3-member hci-controller cluster (release
# build, loopback, fsync on) with BENCH_HOSTS hosts registered through the join API (made-up
# inventories, no agents: nothing boots) is loaded by wrk (create.lua) with VM creates (1 vCPU,
# 256 MiB, stopped) sent to the leader: each is planned by hci-placement on the leader, committed
# through Raft with its decision and verified again when applied. Prints a markdown table of
# placements/s, p50, p99 and errors per connection count, and checks afterwards that no host holds
# more than 80 % of its vCPUs (against the 4:1 overcommit) or memory.
#
# Settings (environment):
#   BENCH_SECONDS=10          measured seconds per connection count
#   BENCH_CONNECTIONS="1 16 64"
#   BENCH_THREADS=2           wrk threads (never more than the connections)
#   BENCH_HOSTS=200           hosts of 256 CPUs and 1 TiB (819 such VMs each under the cap)
#   BENCH_OUT=FILE            also write the report (markdown) to FILE
#   BENCH_KEEP=1              keep the scratch directory (data dirs, logs, raw wrk output)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-"1 16 64"}
BENCH_THREADS=${BENCH_THREADS:-2}
BENCH_HOSTS=${BENCH_HOSTS:-200}
LUA=$PWD/bench/placement-e2e/create.lua
for setting in BENCH_SECONDS BENCH_THREADS BENCH_HOSTS; do
  [[ ${!setting} =~ ^[0-9]+$ ]] || die "$setting must be a number"
done
command -v wrk >/dev/null || die "wrk not found (./scripts/install-deps.sh installs it)"

log() { echo "[bench] $*" >&2; }

bench_work_dir
RESULTS=$WORK/results.tsv
: >"$RESULTS"

log "building hci (release)"
cargo build --release -p hci-controller -p hcictl >&2
BIN="$(cargo_target_dir)/release"

# --- the cluster ----------------------------------------------------------------------------------
read -r -a PORT < <(free_ports 3)
start_member "$BIN/hci-controller" 1 "${PORT[0]}" "$WORK/hci-1" "$WORK/hci-1.log" --bootstrap --host-lease-ms 600000
wait_until 10 "admin.token" test -s "$WORK/hci-1/admin.token"
TOKEN=$(cat "$WORK/hci-1/admin.token")
wait_until 30 "member 1 to lead" leader_is "${PORT[0]}" "$TOKEN" 1
for i in 2 3; do
  start_member "$BIN/hci-controller" "$i" "${PORT[$((i - 1))]}" "$WORK/hci-$i" "$WORK/hci-$i.log" --host-lease-ms 600000
  HCI_URL="http://127.0.0.1:${PORT[0]}" HCI_TOKEN=$TOKEN \
    "$BIN/hcictl" cluster members add --id "$i" --addr "127.0.0.1:${PORT[$((i - 1))]}" >>"$WORK/setup.log"
done
wait_until 60 "3 voters" voters_are "${PORT[0]}" "$TOKEN" 3
LEADER_ID=$(cluster_json "${PORT[0]}" "$TOKEN" | jq -er .leader_id)
URL="http://127.0.0.1:${PORT[$((LEADER_ID - 1))]}"
api() { # api METHOD PATH [BODY] [BEARER]
  curl -sf -X "$1" -H "Authorization: Bearer ${4:-$TOKEN}" -H 'Content-Type: application/json' \
    ${3:+-d "$3"} "$URL$2"
}
api POST /v1/tenants '{"name":"bench","quota":{"vcpus":1000000,"memory_mib":4000000000,"disk_gib":1000000}}' \
  >/dev/null || die "could not create the tenant"
log "joining $BENCH_HOSTS hosts"
for ((h = 1; h <= BENCH_HOSTS; h++)); do
  join_token=$(api POST /v1/hosts/join-tokens '{}' | jq -er .token)
  body=$(jq -cn --arg id "bench-h$h" '{host_id: $id, site: "primary", arch: "x86_64", agent_url: "http://127.0.0.1:9",
    inventory: {cpus: 256, memory_mib: 1048576, accelerator: "kvm", libvirt_version: "9.0.0",
      pools: [{name: "default", backend: "dir-qcow2", capacity_bytes: 10995116277760, allocation_bytes: 0,
               available_bytes: 10995116277760}], firmware_profiles: ["x86_64-bios"]}}')
  api POST /v1/hosts/join "$body" "$join_token" >/dev/null || die "host bench-h$h could not join"
done
log "3 members up, leader is member $LEADER_ID; $BENCH_HOSTS hosts ready"

# --- load ----------------------------------------------------------------------------------------
for conns in $BENCH_CONNECTIONS; do
  threads=$((conns < BENCH_THREADS ? conns : BENCH_THREADS))
  out=$WORK/wrk-$conns.txt
  log "$conns connection(s), $threads thread(s), ${BENCH_SECONDS}s"
  BENCH_TOKEN=$TOKEN BENCH_RUN="c$conns" BENCH_WRITE_LUA=$PWD/bench/raft-writes/write.lua \
    wrk -t"$threads" -c"$conns" -d"${BENCH_SECONDS}s" --timeout 10s -s "$LUA" "$URL" >"$out"
  line=$(grep '^BENCH_RESULT ' "$out") || die "no BENCH_RESULT line in $out"
  grep '^BENCH_SAMPLE_ERROR ' "$out" >&2 || true
  awk -v c="$conns" '{
      for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      printf "%s\t%s\t%s\t%s\t%d\n", c, v["writes_per_s"], v["p50_ms"], v["p99_ms"], v["non2xx"] + v["socket_errors"]
    }' <<<"$line" >>"$RESULTS"
  tail -n 1 "$RESULTS" | awk -F'\t' '{ printf "[bench]   %s placements/s, p50 %s ms, p99 %s ms, %s errors\n", $2, $3, $4, $5 }' >&2
done

# --- the cap held ---------------------------------------------------------------------------------
VMS=$(api GET /v1/vms)
PLACED=$(jq '[.items[] | select(.host != null)] | length' <<<"$VMS")
WORST=$(jq -r '[.items[] | {host, vcpus, memory_mib}] | group_by(.host)
  | map({host: .[0].host, vcpus: (map(.vcpus) | add), mib: (map(.memory_mib) | add)})
  | map(. + {vcpu_pct: (.vcpus * 100 / (256 * 4)), mem_pct: (.mib * 100 / 1048576)})
  | max_by([.vcpu_pct, .mem_pct]) | "\(.host) \(.vcpu_pct) \(.mem_pct)"' <<<"$VMS")
read -r worst_host worst_vcpu worst_mem <<<"$WORST"
awk -v v="$worst_vcpu" -v m="$worst_mem" 'BEGIN { exit !(v <= 80 && m <= 80) }' ||
  die "host $worst_host is above the cap: vCPU $worst_vcpu %, memory $worst_mem %"

report() {
  echo "## placement-e2e: $(date -u +%Y-%m-%d) on $(nproc) cores, $(uname -r)"
  echo
  echo "3 members (release), $BENCH_HOSTS hosts, wrk ${BENCH_SECONDS}s per row; hci $(git describe --always --dirty 2>/dev/null || echo '?')"
  echo
  echo "| connections | placements/s | p50 ms | p99 ms | errors |"
  echo "|---:|---:|---:|---:|---:|"
  awk -F'\t' '{ printf "| %s | %.0f | %.2f | %.2f | %d |\n", $1, $2, $3, $4, $5 }' "$RESULTS"
  echo
  echo "$PLACED VMs placed; the fullest host ($worst_host) at ${worst_vcpu} % of its vCPUs, ${worst_mem} % of its memory."
}
if [[ -n ${BENCH_OUT:-} ]]; then report | tee "$BENCH_OUT"; else report; fi
