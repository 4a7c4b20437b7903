#!/usr/bin/env bash
# run.sh: the agent create-latency benchmark (see BENCHMARKS.md). On one private libvirt instance
# (scripts/libvirt/host.sh) with one hci-agent (release build) on it, creates test-guest VMs one at a
# time, alternating in the same run between the agent (PUT a desired state that adds the VM) and raw
# libvirt (virsh vol-create + define + start of the same volume and domain XML), and times each
# until the VM is running and until its console shows HCI-GUEST-BOOTED. Prints a markdown table of
# medians and p90s, the agent/raw ratios, and where the agent's time goes (its /metrics per create).
# The timing loop is bench/agent-create/bench.py.
#
# Settings (environment):
#   BENCH_ITERATIONS=10            measured creates per method (after one warm-up each)
#   BENCH_VCPUS=1 BENCH_MEMORY_MIB=256 BENCH_FIRMWARE=x86_64-bios   the guest
#   BENCH_POLL_MS=10               how often the report / console / domstate is polled
#   BENCH_PAUSE=2                  seconds between creates (teardown settles)
#   BENCH_RECONCILE_INTERVAL=3600  the agent's --reconcile-interval: no drift-repair pass runs during
#                                  the run, only the passes the PUTs wake
#   BENCH_EXTRA_VOLUMES=0          empty volumes the agent's host holds throughout (a fuller host:
#                                  every reconcile pass lists them)
#   BENCH_AGENT_LOG=info           the agent's RUST_LOG (e.g. hci_agent=debug)
#   BENCH_OUT=FILE                 also write the report (markdown) to FILE
#   BENCH_KEEP=1                   keep the scratch directory (agent log, domain XMLs, results.json),
#                                  also on failure
#   BENCH_HCI_VERSION=...          what the report names as the hci version (default: git describe)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

BENCH_ITERATIONS=${BENCH_ITERATIONS:-10}
BENCH_VCPUS=${BENCH_VCPUS:-1}
BENCH_MEMORY_MIB=${BENCH_MEMORY_MIB:-256}
BENCH_FIRMWARE=${BENCH_FIRMWARE:-x86_64-bios}
BENCH_POLL_MS=${BENCH_POLL_MS:-10}
BENCH_PAUSE=${BENCH_PAUSE:-2}
BENCH_RECONCILE_INTERVAL=${BENCH_RECONCILE_INTERVAL:-3600}
BENCH_EXTRA_VOLUMES=${BENCH_EXTRA_VOLUMES:-0}
BENCH_AGENT_LOG=${BENCH_AGENT_LOG:-info}
GUEST_DIR=/var/cache/hci-test-guest
[[ $EUID -eq 0 ]] || die "run as root (libvirt instance, QEMU guests)"
[[ $BENCH_ITERATIONS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ITERATIONS must be a positive integer"
[[ $BENCH_EXTRA_VOLUMES =~ ^[0-9]+$ ]] || die "BENCH_EXTRA_VOLUMES must be a number"

log() { echo "[bench] $*" >&2; }

WORK=""
HOST_ID="bac-$$"
HOST_STARTED=0
URI=""

# Every domain on the private instance is ours (agent-created or raw): destroy and undefine them
# before the instance goes, or their QEMU would outlive it.
remove_domains() {
  local name
  [[ -n $URI ]] || return 0
  while read -r name; do
    [[ -n $name ]] || continue
    virsh -c "$URI" destroy "$name" >/dev/null 2>&1 || true
    virsh -c "$URI" undefine "$name" --nvram >/dev/null 2>&1 ||
      virsh -c "$URI" undefine "$name" >/dev/null 2>&1 || log "warning: could not undefine $name"
  done < <(timeout 30 virsh -c "$URI" list --all --name 2>/dev/null || true)
}

BENCH_PID=""
cleanup() {
  local rc=$?
  [[ -z $BENCH_PID ]] || stop_pids TERM "$BENCH_PID" # the timing loop, if interrupted
  stop_all TERM # then the agent, so it cannot act on the instance any more
  remove_domains
  if [[ $HOST_STARTED == 1 ]]; then
    scripts/libvirt/host.sh down "$HOST_ID" --purge >&2 || log "warning: host.sh down $HOST_ID failed"
  fi
  if [[ -n $WORK ]]; then
    if [[ $rc -ne 0 && -f $WORK/agent.log ]]; then
      echo "--- agent log (tail) ---" >&2
      tail -n 30 "$WORK/agent.log" >&2
    fi
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
      rm -rf "$WORK/agent/data" "$WORK/raw-pool" # images and volumes: large, useless without the instance
      echo "kept $WORK" >&2
    else
      rm -rf "$WORK"
    fi
  fi
  [[ $rc -eq 0 ]] || echo "bench FAILED (exit $rc)" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "libvirt packages and configuration (scripts/libvirt/up.sh)"
./scripts/libvirt/up.sh >&2
log "test guest (scripts/guest/build.sh $GUEST_DIR)"
./scripts/guest/build.sh "$GUEST_DIR" >&2
log "building hci-agent (release)"
cargo build --release -p hci-agent >&2
AGENT_BIN="$(cargo_target_dir)/release/hci-agent"

# Under /var/tmp (not tmpfs, not /tmp's private space), traversable by libvirt's QEMU user.
WORK=$(mktemp -d /var/tmp/hci-bench-agent.XXXXXX)
chmod 755 "$WORK"

HOST_STARTED=1
URI=$(scripts/libvirt/host.sh up "$HOST_ID" | awk '/^qemu:/ { u = $0 } END { print u }')
[[ -n $URI ]] || die "host.sh up $HOST_ID printed no URI"
log "libvirt instance $HOST_ID: $URI"

read -r PORT < <(free_ports 1)
mkdir -p "$WORK/agent"
NO_COLOR=1 RUST_LOG=$BENCH_AGENT_LOG "$AGENT_BIN" --host-id "$HOST_ID" --libvirt-uri "$URI" \
  --listen "127.0.0.1:$PORT" --data-dir "$WORK/agent/data" \
  --reconcile-interval "$BENCH_RECONCILE_INTERVAL" --shutdown-timeout 20 >>"$WORK/agent.log" 2>&1 &
HCI_PIDS+=("$!")
wait_until 30 "hci-agent /healthz on 127.0.0.1:$PORT (log: $WORK/agent.log)" healthz_ok "$PORT"
log "hci-agent pid ${HCI_PIDS[0]} on 127.0.0.1:$PORT"

BENCH_HCI_VERSION=${BENCH_HCI_VERSION:-$(git describe --always --dirty 2>/dev/null || echo '?')} \
  python3 bench/agent-create/bench.py --agent-url "http://127.0.0.1:$PORT" --uri "$URI" \
  --host-id "$HOST_ID" --image "$GUEST_DIR/disk.qcow2" --work "$WORK" \
  --iterations "$BENCH_ITERATIONS" --vcpus "$BENCH_VCPUS" --memory-mib "$BENCH_MEMORY_MIB" \
  --firmware "$BENCH_FIRMWARE" --poll-ms "$BENCH_POLL_MS" --pause "$BENCH_PAUSE" \
  --extra-volumes "$BENCH_EXTRA_VOLUMES" \
  --json "$WORK/results.json" >"$WORK/report.md" &
BENCH_PID=$!
wait "$BENCH_PID" # in the background so that a TERM runs the cleanup at once
BENCH_PID=""

if [[ -n ${BENCH_OUT:-} ]]; then tee "$BENCH_OUT" <"$WORK/report.md"; else cat "$WORK/report.md"; fi
