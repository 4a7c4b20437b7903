#!/usr/bin/env bash
# down.sh: stops the libvirtd and virtlogd that scripts/libvirt/up.sh started (by their pid files,
# checked against /proc so that no other process is signalled) and removes their pid files.
#
#   scripts/libvirt/down.sh
#
# Domains that are still running are listed on stderr: their QEMU processes outlive libvirtd (libvirt
# reconnects to them on its next start); destroy them first (virsh destroy) when you want none left.
set -euo pipefail

LOG_PREFIX=libvirt-down
# shellcheck source=scripts/libvirt/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stop_daemon() {
  local pidfile=$1 name=$2 pid
  if ! pid=$(pid_of_daemon "$pidfile" "$name"); then
    [[ -e $pidfile ]] && log "$name: stale pid file $pidfile removed"
    rm -f "$pidfile"
    return 0
  fi
  stop_pid "$name" "$pid"
  rm -f "$pidfile"
}

main() {
  if pid_of_daemon "$LIBVIRTD_PID" libvirtd >/dev/null && libvirt_answers "$LIBVIRT_URI"; then
    local running
    running=$(virsh -c "$LIBVIRT_URI" list --name 2>/dev/null | sed '/^$/d' || true)
    if [[ -n $running ]]; then
      echo "libvirt-down: warning: domains still running (their QEMU keeps running): $(echo "$running" | paste -sd ' ' -)" >&2
    fi
  fi
  # libvirtd first: it holds connections to virtlogd for the domains' logs.
  stop_daemon "$LIBVIRTD_PID" libvirtd
  stop_daemon "$VIRTLOGD_PID" virtlogd
  rm -f "$HCI_STATE/mode" "$HCI_STATE/kvm-hidden"
  rmdir "$HCI_STATE" 2>/dev/null || true
}

main "$@"
