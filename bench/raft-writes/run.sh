#!/usr/bin/env bash
# run.sh: the replicated-write benchmark (see BENCHMARKS.md). Side by side in one run, on loopback
# with fsync on: a 3-member hci-controller cluster (release build) and a 3-member etcd cluster
# (Debian's etcd 3.4). Each is loaded by wrk (write.lua) with small overwrites sent to its leader, at
# each connection count; one cluster runs at a time, the other is stopped. Prints a markdown table of
# writes/s, p50, p99 and errors per system and connection count, and the hci/etcd ratios.
#
# Settings (environment):
#   BENCH_SECONDS=20          measured seconds per system and connection count
#   BENCH_WARMUP=3            seconds of unmeasured load before each system's first measurement
#   BENCH_CONNECTIONS="1 16 64"
#   BENCH_THREADS=2           wrk threads (never more than the connections)
#   BENCH_SYSTEMS="etcd hci"  which systems to run, in this order
#   BENCH_OUT=FILE            also write the report (markdown) to FILE
#   BENCH_KEEP=1              keep the scratch directory (data dirs, logs, raw wrk output)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

BENCH_SECONDS=${BENCH_SECONDS:-20}
BENCH_WARMUP=${BENCH_WARMUP:-3}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-"1 16 64"}
BENCH_THREADS=${BENCH_THREADS:-2}
BENCH_SYSTEMS=${BENCH_SYSTEMS:-"etcd hci"}
LUA=$PWD/bench/raft-writes/write.lua
for system in $BENCH_SYSTEMS; do
  [[ $system == etcd || $system == hci ]] || die "BENCH_SYSTEMS: unknown system '$system' (etcd, hci)"
done

log() { echo "[bench] $*" >&2; }

./scripts/install-deps.sh >&2
bench_work_dir
fs=$(df --output=fstype "$WORK" | tail -n 1)
[[ $fs != tmpfs ]] || log "warning: $WORK is on tmpfs: fsync costs nothing there, the figures flatter both systems"
RESULTS=$WORK/results.tsv
: >"$RESULTS"

# measure SYSTEM URL TOKEN: wrk at each connection count against URL; appends to RESULTS.
measure() {
  local system=$1 url=$2 token=$3 conns threads out line
  if ((BENCH_WARMUP > 0)); then
    log "$system: warm-up ${BENCH_WARMUP}s"
    BENCH_TARGET=$system BENCH_TOKEN=$token \
      wrk -t1 -c4 -d"${BENCH_WARMUP}s" -s "$LUA" "$url" >"$WORK/wrk-$system-warmup.txt"
  fi
  for conns in $BENCH_CONNECTIONS; do
    threads=$((conns < BENCH_THREADS ? conns : BENCH_THREADS))
    out=$WORK/wrk-$system-$conns.txt
    log "$system: $conns connection(s), $threads thread(s), ${BENCH_SECONDS}s"
    BENCH_TARGET=$system BENCH_TOKEN=$token \
      wrk -t"$threads" -c"$conns" -d"${BENCH_SECONDS}s" --timeout 10s -s "$LUA" "$url" >"$out"
    line=$(grep '^BENCH_RESULT ' "$out") || die "no BENCH_RESULT line in $out"
    grep '^BENCH_SAMPLE_ERROR ' "$out" >&2 || true
    # BENCH_RESULT k=v ... -> system conns writes/s p50 p99 errors
    awk -v s="$system" -v c="$conns" '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%s\t%s\t%s\t%s\t%s\t%d\n", s, c, v["writes_per_s"], v["p50_ms"], v["p99_ms"], v["non2xx"] + v["socket_errors"]
      }' <<<"$line" >>"$RESULTS"
    tail -n 1 "$RESULTS" | awk -F'\t' '{ printf "[bench]   %s writes/s, p50 %s ms, p99 %s ms, %s errors\n", $3, $4, $5, $6 }' >&2
  done
}

# --- etcd ---------------------------------------------------------------------------------------
ETCD_VERSION=$(etcd --version 2>/dev/null | awk '/etcd Version/ {print $3}')

etcd_status() { curl -sf --max-time 2 -X POST -d '{}' "http://127.0.0.1:$1/v3/maintenance/status"; }
etcd_healthy() { [[ $(curl -sf --max-time 2 "http://127.0.0.1:$1/health" | jq -r .health) == true ]]; }
etcd_leader_port() { # prints the client port of the member that is the leader
  local p s
  for p in "$@"; do
    s=$(etcd_status "$p") || continue
    if jq -e '.header.member_id == .leader' >/dev/null <<<"$s"; then echo "$p"; return 0; fi
  done
  return 1
}

bench_etcd() {
  local -a ports client peer
  read -r -a ports < <(free_ports 6) # one call, so all six differ
  client=("${ports[@]:0:3}")
  peer=("${ports[@]:3:3}")
  local initial="" i
  for i in 0 1 2; do initial+="${initial:+,}m$((i + 1))=http://127.0.0.1:${peer[$i]}"; done
  local -a pids=()
  for i in 0 1 2; do
    local name=m$((i + 1))
    etcd --name "$name" --data-dir "$WORK/etcd-$name" \
      --listen-client-urls "http://127.0.0.1:${client[$i]}" --advertise-client-urls "http://127.0.0.1:${client[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${peer[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${peer[$i]}" \
      --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token hci-bench \
      --logger zap --log-level warn >"$WORK/etcd-$name.log" 2>&1 &
    HCI_PIDS+=("$!")
    pids+=("$!")
  done
  for i in 0 1 2; do wait_until 60 "etcd member m$((i + 1)) healthy" etcd_healthy "${client[$i]}"; done
  wait_until 30 "an etcd leader" etcd_leader_port "${client[@]}"
  local leader
  leader=$(etcd_leader_port "${client[@]}")
  log "etcd $ETCD_VERSION: 3 members up, leader on client port $leader"
  measure etcd "http://127.0.0.1:$leader/v3/kv/put" ""
  log "etcd: key 'bench' now at version $(curl -sf -X POST -d '{"key":"YmVuY2g="}' "http://127.0.0.1:$leader/v3/kv/range" | jq -r '.kvs[0].version')"
  stop_pids TERM "${pids[@]}"
  HCI_PIDS=()
}

# --- hci ----------------------------------------------------------------------------------------
bench_hci() {
  log "building hci (release)"
  cargo build --release -p hci-controller -p hcictl >&2
  local bin
  bin="$(cargo_target_dir)/release"
  local -a port
  read -r -a port < <(free_ports 3)
  local i
  start_member "$bin/hci-controller" 1 "${port[0]}" "$WORK/hci-1" "$WORK/hci-1.log" --site bench --bootstrap
  wait_until 10 "admin.token" test -s "$WORK/hci-1/admin.token"
  local token
  token=$(cat "$WORK/hci-1/admin.token")
  wait_until 30 "member 1 to lead" leader_is "${port[0]}" "$token" 1
  for i in 2 3; do
    start_member "$bin/hci-controller" "$i" "${port[$((i - 1))]}" "$WORK/hci-$i" "$WORK/hci-$i.log" --site bench
    HCI_URL="http://127.0.0.1:${port[0]}" HCI_TOKEN=$token \
      "$bin/hcictl" cluster members add --id "$i" --addr "127.0.0.1:${port[$((i - 1))]}" >>"$WORK/hci-setup.log"
  done
  wait_until 60 "3 voters" voters_are "${port[0]}" "$token" 3
  local leader_id leader_port=""
  leader_id=$(cluster_json "${port[0]}" "$token" | jq -er .leader_id)
  leader_port=${port[$((leader_id - 1))]}
  curl -sf -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"name":"bench","description":"","quota":{"vcpus":1,"memory_mib":64,"disk_gib":1}}' \
    "http://127.0.0.1:$leader_port/v1/tenants" >/dev/null || die "could not create the tenant 'bench'"
  log "hci: 3 members up, leader is member $leader_id on port $leader_port"
  measure hci "http://127.0.0.1:$leader_port/v1/tenants/bench" "$token"
  log "hci: tenant 'bench' now at revision $(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$leader_port/v1/tenants/bench" | jq -r .revision)"
  stop_all TERM
}

for system in $BENCH_SYSTEMS; do
  case $system in
    etcd) bench_etcd ;;
    hci) bench_hci ;;
  esac
done

# --- report -------------------------------------------------------------------------------------
report() {
  echo "## raft-writes: $(date -u +%Y-%m-%d) on $(nproc) cores, $(uname -r), data on $fs"
  echo
  echo "wrk: ${BENCH_SECONDS}s per row, up to $BENCH_THREADS threads; etcd $ETCD_VERSION; hci $(git describe --always --dirty 2>/dev/null || echo '?')"
  echo
  echo "| system | connections | writes/s | p50 ms | p99 ms | errors |"
  echo "|---|---:|---:|---:|---:|---:|"
  awk -F'\t' -v ev="$ETCD_VERSION" '{ n = ($1 == "etcd") ? "etcd " ev : $1;
      printf "| %s | %s | %.0f | %.2f | %.2f | %d |\n", n, $2, $3, $4, $5, $6 }' "$RESULTS"
  if grep -q '^etcd' "$RESULTS" && grep -q '^hci' "$RESULTS"; then
    echo
    echo "| connections | hci/etcd writes/s | hci/etcd p99 |"
    echo "|---:|---:|---:|"
    awk -F'\t' '{ w[$1 "," $2] = $3; p[$1 "," $2] = $5; if (!seen[$2]++) c[++n] = $2 }
      END { for (i = 1; i <= n; i++) { k = c[i]
              if (("etcd," k) in w && ("hci," k) in w && w["etcd," k] > 0 && p["etcd," k] > 0)
                printf "| %s | %.2f | %.2f |\n", k, w["hci," k] / w["etcd," k], p["hci," k] / p["etcd," k] } }' "$RESULTS"
    awk -F'\t' '$2 == 64 { w[$1] = $3; p[$1] = $5 }
      END { if (("etcd" in w) && ("hci" in w)) {
              ok = (w["hci"] >= 1.5 * w["etcd"] && p["hci"] <= p["etcd"])
              printf "\nTarget at 64 connections (hci >= 1.5x etcd writes/s, p99 no worse): %s\n", ok ? "MET" : "NOT MET" } }' "$RESULTS"
  fi
}
if [[ -n ${BENCH_OUT:-} ]]; then report | tee "$BENCH_OUT"; else report; fi
