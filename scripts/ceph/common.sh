# shellcheck shell=bash
# common.sh: shared by scripts/ceph/up.sh and down.sh (sourced, not run on its own): the daemons of
# a one-node test cluster, where their pid files are, and how to tell whether a pid file names a
# live daemon of that cluster.

LOG_PREFIX=${LOG_PREFIX:-ceph}
log() { echo "$LOG_PREFIX: $*"; }
die() { echo "$LOG_PREFIX: error: $*" >&2; exit 1; }

# shellcheck disable=SC2034 # used by the scripts that source this
# The daemons, in start order: "ceph name:binary". down.sh stops them in reverse order.
DAEMONS=(mon.a:ceph-mon mgr.x:ceph-mgr osd.0:ceph-osd)

# shellcheck disable=SC2034
# The file that marks DIR as a cluster made by up.sh (down.sh --purge removes only such a DIR).
STAMP=hci-ceph-cluster

# pid_of DIR NAME BINARY: prints the pid in DIR/run/NAME.pid when that process is alive, is BINARY
# (/proc/PID/comm) and runs with DIR/ceph.conf (/proc/PID/cmdline), so neither a stale pid file
# whose pid was reused nor another cluster's daemon is taken for it.
pid_of() {
  local dir=$1 name=$2 binary=$3 pid state
  [[ -r $dir/run/$name.pid ]] || return 1
  pid=$(tr -dc '0-9' <"$dir/run/$name.pid")
  [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$binary" ]] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$dir/ceph.conf" || return 1
  # A killed daemon stays a zombie until PID 1 reaps it: not running.
  state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z && $state != X ]] || return 1
  echo "$pid"
}

# wait_for SECONDS DESCRIPTION CMD...: runs CMD every 0.2 s until it succeeds; returns 1 at the deadline.
wait_for() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "$LOG_PREFIX: timed out after ${timeout}s waiting for: $what" >&2
      return 1
    fi
    sleep 0.2
  done
}
