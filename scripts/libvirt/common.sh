# shellcheck shell=bash
# common.sh: shared by scripts/libvirt/up.sh, down.sh and host.sh (sourced, not run on its own).
# Where the libvirt daemons keep their pid files, how to tell whether a pid file names a live daemon,
# and a deadline-based wait.

HCI_LIBVIRT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HCI_STATE=/run/hci-libvirt           # our own runtime state: the empty file that hides /dev/kvm, the mode
LIBVIRTD_PID=/run/libvirtd.pid       # libvirtd's default pid file when it runs as root
VIRTLOGD_PID=/run/virtlogd.pid       # virtlogd's default pid file when it runs as root
LIBVIRT_URI=qemu:///system

log() { echo "${LOG_PREFIX:-libvirt}: $*"; }
die() { echo "${LOG_PREFIX:-libvirt}: error: $*" >&2; exit 1; }

# pid_of_daemon PIDFILE NAME: prints the pid in PIDFILE when that process is alive and is NAME
# (checked through /proc/PID/comm, so a stale pid file whose pid was reused is not taken for it).
pid_of_daemon() {
  local pidfile=$1 name=$2 pid comm
  [[ -r $pidfile ]] || return 1
  pid=$(tr -dc '0-9' <"$pidfile")
  [[ -n $pid ]] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  # comm is cut to 15 characters; libvirtd and virtlogd fit. Its worker threads rename themselves, but
  # /proc/PID/comm is the main thread's name.
  [[ $comm == "$name" ]] || return 1
  echo "$pid"
}

# wait_for SECONDS DESCRIPTION CMD...: runs CMD every 0.1 s until it succeeds; returns 1 at the deadline.
wait_for() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "${LOG_PREFIX:-libvirt}: timed out after ${timeout}s waiting for: $what" >&2
      return 1
    fi
    sleep 0.1
  done
}

libvirt_answers() { timeout 10 virsh -c "${1:-$LIBVIRT_URI}" version >/dev/null 2>&1; }
