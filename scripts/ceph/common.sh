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

# shellcheck source=scripts/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/../daemon.sh"

# pid_of DIR NAME BINARY: prints the pid in DIR/run/NAME.pid when that process is alive, is BINARY
# and runs with DIR/ceph.conf (/proc/PID/cmdline), so neither a stale pid file nor another cluster's
# daemon is taken for it.
pid_of() {
  local dir=$1 name=$2 binary=$3 pid
  pid=$(live_pid "$dir/run/$name.pid" "$binary") || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$dir/ceph.conf" || return 1
  echo "$pid"
}
