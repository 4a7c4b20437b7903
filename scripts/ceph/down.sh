#!/usr/bin/env bash
# down.sh: stops the daemons of the test cluster that scripts/ceph/up.sh made in DIR (by their pid
# files in DIR/run, checked against /proc so that no other process is signalled: the right binary,
# started with DIR/ceph.conf), OSD first, monitor last. --purge then removes DIR, but only when it
# carries up.sh's stamp file.
#
#   scripts/ceph/down.sh DIR [--purge]
set -euo pipefail

LOG_PREFIX=ceph-down
# shellcheck source=scripts/ceph/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -ge 1 && $# -le 2 && -n $1 ]] || { echo "usage: $0 DIR [--purge]" >&2; exit 2; }
PURGE=${2:-}
[[ -z $PURGE || $PURGE == --purge ]] || { echo "usage: $0 DIR [--purge]" >&2; exit 2; }
DIR=$(realpath -m -- "$1")

stop_daemon() {
  local name=$1 binary=$2 pid
  if ! pid=$(pid_of "$DIR" "$name" "$binary"); then
    rm -f "$DIR/run/$name.pid"
    return 0
  fi
  stop_pid "$name" "$pid"
  rm -f "$DIR/run/$name.pid"
}

main() {
  [[ -d $DIR ]] || { log "$DIR does not exist; nothing to do"; return 0; }
  local i d
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    d=${DAEMONS[i]}
    stop_daemon "${d%%:*}" "${d#*:}"
  done
  if [[ $PURGE == --purge ]]; then
    [[ -f $DIR/$STAMP ]] || die "$DIR has no $STAMP file: not a cluster made by up.sh; not removing it"
    rm -rf -- "$DIR"
    log "$DIR removed"
  fi
}

main
