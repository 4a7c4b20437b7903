# shellcheck shell=bash
# lib.sh: helpers sourced by scripts/demo.sh and bench/raft-writes/run.sh (not run on its own):
# free loopback ports, polling, and starting/stopping hci-controller members in a scratch directory.
# Every process started through here is recorded in HCI_PIDS so the caller's EXIT trap can stop it.

HCI_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="${HOME:-/root}/.cargo/bin:$PATH"

declare -a HCI_PIDS=() # every daemon started by this script, for cleanup
declare -A HCI_MEMBER_PID=() # member id -> pid of its hci-controller

die() { echo "error: $*" >&2; exit 1; }

# Prints N distinct free TCP ports on 127.0.0.1 (the kernel picks them: bind to port 0, all held
# open together so they differ, then released for the daemons to take).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# wait_until SECONDS DESCRIPTION CMD...: runs CMD every 0.2 s until it succeeds; dies after SECONDS.
wait_until() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for: $what"
    sleep 0.2
  done
}

# The directory cargo builds into (honours CARGO_TARGET_DIR and .cargo/config.toml).
cargo_target_dir() {
  if [[ -n ${CARGO_TARGET_DIR:-} ]]; then echo "$CARGO_TARGET_DIR"; return; fi
  (cd "$HCI_ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
}

# http_status URL [TOKEN]: prints the HTTP status code of a GET (000 when nothing answers).
http_status() {
  local -a auth=()
  [[ -n ${2:-} ]] && auth=(-H "Authorization: Bearer $2")
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${auth[@]}" "$1" || true
}

healthz_ok() { [[ $(http_status "http://127.0.0.1:$1/healthz") == 200 ]]; }

# cluster_json PORT TOKEN: GET /v1/cluster?stale=true from one member (its own view).
cluster_json() {
  curl -sf --max-time 2 -H "Authorization: Bearer $2" "http://127.0.0.1:$1/v1/cluster?stale=true"
}

# leader_is PORT TOKEN ID: the member on PORT sees ID as the leader.
leader_is() { [[ $(cluster_json "$1" "$2" | jq -r '.leader_id // empty') == "$3" ]]; }

# has_leader_other_than PORT TOKEN ID: the member on PORT sees a leader, and it is not ID.
has_leader_other_than() {
  local l
  l=$(cluster_json "$1" "$2" | jq -r '.leader_id // empty')
  [[ -n $l && $l != "$3" ]]
}

# voters_are PORT TOKEN N: the member on PORT sees N members, none of them still a learner.
voters_are() {
  cluster_json "$1" "$2" |
    jq -e --argjson n "$3" '(.members | length) == $n and all(.members[]; .role != "learner")' >/dev/null
}

# start_member BIN ID PORT DATA_DIR LOG [EXTRA_FLAGS...]: starts one hci-controller in the background.
# shellcheck disable=SC2034 # HCI_MEMBER_PID is read by the scripts that source this file
start_member() {
  local bin=$1 id=$2 port=$3 dir=$4 log=$5; shift 5
  mkdir -p "$dir"
  NO_COLOR=1 "$bin" --id "$id" --listen "127.0.0.1:$port" --data-dir "$dir" "$@" >>"$log" 2>&1 &
  local pid=$!
  HCI_PIDS+=("$pid")
  HCI_MEMBER_PID[$id]=$pid
  wait_until 30 "member $id /healthz on 127.0.0.1:$port (log: $log)" healthz_ok "$port"
}

# stop_pids SIGNAL PID...: signals processes we started, waits up to 15 s for all of them to exit,
# then SIGKILLs any that are left.
stop_pids() {
  local sig=$1; shift
  local pid
  local -a left
  for pid in "$@"; do kill "-$sig" "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + 15))
  while :; do
    left=()
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
    [[ ${#left[@]} -eq 0 ]] && break
    if ((SECONDS >= deadline)); then
      echo "warning: pid(s) ${left[*]} still running 15 s after SIG$sig; sending SIGKILL" >&2
      for pid in "${left[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
      break
    fi
    sleep 0.2
  done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# stop_all [SIGNAL]: stops every process recorded in HCI_PIDS (for EXIT traps).
stop_all() {
  [[ ${#HCI_PIDS[@]} -eq 0 ]] || stop_pids "${1:-TERM}" "${HCI_PIDS[@]}"
  HCI_PIDS=()
}

# bench_work_dir: for a benchmark, makes the scratch directory WORK and installs traps that on exit
# stop every process recorded in HCI_PIDS and remove WORK, or keep it with its logs when the
# benchmark failed or BENCH_KEEP=1 (it sets WORK itself: a subshell could not install the traps).
WORK=""
bench_cleanup() {
  local rc=$?
  stop_all TERM
  if [[ -n $WORK ]]; then
    if [[ $rc -ne 0 ]]; then
      echo "bench FAILED (exit $rc); logs in $WORK" >&2
    elif [[ ${BENCH_KEEP:-0} == 1 ]]; then
      echo "kept $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}
bench_work_dir() {
  WORK=$(mktemp -d -t hci-bench.XXXXXX)
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
