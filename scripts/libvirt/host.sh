#!/usr/bin/env bash
# host.sh: one more libvirt instance on this machine, for one simulated host: its own libvirtd and
# virtlogd, its own config, state, logs and socket, so its domains, NVRAM, vTPM state and logs are
# invisible to every other instance (and to qemu:///system).
#
#   scripts/libvirt/host.sh up ID [--purge]   start (idempotent); prints the URI to reach it
#   scripts/libvirt/host.sh down ID [--purge] stop; --purge also removes its directory
#   scripts/libvirt/host.sh uri ID            print the URI
#
# ID: [a-z0-9-]{1,20}. Needs the packages and /etc/libvirt of scripts/libvirt/up.sh (run it once;
# the system instance does not have to be running). Directory: $HCI_HOSTS_DIR/ID (default
# /run/hci-hosts/ID) with etc/ lib/ cache/ log/ run/ swtpm-log/, bind-mounted inside a private mount
# namespace over /etc/libvirt, /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt, /run/libvirt
# and /var/log/swtpm; /dev/kvm is hidden there as in up.sh when KVM is unusable. The socket is then
# $HCI_HOSTS_DIR/ID/run/libvirt-sock outside the namespace:
#   virsh -c 'qemu:///system?socket=/run/hci-hosts/ID/run/libvirt-sock' ...
# Each instance has its own host UUID, so live migration between instances works (peer-to-peer:
# the source libvirtd reaches the target's socket, which is visible to every namespace).
# Caveats (see docs/LIBVIRT.md): tap names and cgroup names (from domain names) are host-global, so
# keep domain names and tap names unique across instances (hci-<host>-<vm>); image paths are the
# host's paths (nothing else is remapped).
set -euo pipefail

LOG_PREFIX=libvirt-host
# shellcheck source=scripts/libvirt/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

BASE=${HCI_HOSTS_DIR:-/run/hci-hosts}

usage() { echo "usage: $0 up|down|uri ID [--purge]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
CMD=$1 ID=$2 PURGE=${3:-}
[[ $ID =~ ^[a-z0-9-]{1,20}$ ]] || die "bad ID '$ID' (want [a-z0-9-]{1,20})"
DIR=$BASE/$ID
SOCK=$DIR/run/libvirt-sock
URI="qemu:///system?socket=$SOCK"
LPID=$DIR/run/libvirtd.pid   # inside the namespace: /run/libvirt/libvirtd.pid
VPID=$DIR/run/virtlogd.pid

# The mounts: host directory -> path inside the namespace.
MOUNTS=(etc:/etc/libvirt lib:/var/lib/libvirt cache:/var/cache/libvirt log:/var/log/libvirt
  run:/run/libvirt swtpm-log:/var/log/swtpm)

prepare() {
  [[ -f /etc/libvirt/qemu.conf ]] || die "no /etc/libvirt/qemu.conf; run scripts/libvirt/up.sh once first"
  local m
  for m in "${MOUNTS[@]}"; do mkdir -p "$DIR/${m%%:*}"; done
  if [[ ! -f $DIR/etc/qemu.conf ]]; then
    # The system instance's configuration (qemu.conf with namespaces = [] etc.), minus its domains,
    # networks and their autostart links: this instance starts empty.
    cp -a /etc/libvirt/. "$DIR/etc/"
    rm -rf "$DIR/etc/qemu/"*.xml "$DIR/etc/qemu/autostart" "$DIR/etc/qemu/networks/autostart"
    # Same binaries, so the system instance's QEMU capability cache is valid here: saves a probe.
    if [[ -d /var/cache/libvirt/qemu/capabilities ]]; then
      mkdir -p "$DIR/cache/qemu"
      cp -a /var/cache/libvirt/qemu/capabilities "$DIR/cache/qemu/"
    fi
    # Directories that the packages create with their owners (libvirt-qemu, swtpm's tss).
    local d
    for d in lib/qemu lib/qemu/nvram lib/swtpm lib/images; do mkdir -p "$DIR/$d"; done
    chown libvirt-qemu:libvirt-qemu "$DIR/lib/qemu" "$DIR/lib/qemu/nvram" 2>/dev/null || true
    chmod 751 "$DIR/lib/qemu" 2>/dev/null || true
    chmod 711 "$DIR/lib/swtpm"
  fi
  # Its own host UUID (libvirt refuses to migrate a domain to a host with its own UUID, and every
  # instance would otherwise take the machine's): stable, derived from the ID.
  local h
  h=$(printf 'hci-host/%s' "$ID" | md5sum | cut -c1-32)
  sed -i '/^host_uuid *=/d' "$DIR/etc/libvirtd.conf"
  echo "host_uuid = \"${h:0:8}-${h:8:4}-${h:12:4}-${h:16:4}-${h:20:12}\"" >>"$DIR/etc/libvirtd.conf"
}

up() {
  if pid_of_daemon "$LPID" libvirtd >/dev/null && libvirt_answers "$URI"; then
    log "$ID already running"
    echo "$URI"
    return 0
  fi
  # A half-started instance (one daemon left): stop it and start both afresh.
  down_daemons
  prepare
  local hide=0
  if ! kvm_usable && [[ -e /dev/kvm ]]; then
    hide=1
    mkdir -p "$HCI_STATE"
    : >"$HCI_STATE/kvm-hidden"
    chmod 600 "$HCI_STATE/kvm-hidden"
  fi
  local -a binds=()
  local m
  for m in "${MOUNTS[@]}"; do binds+=("$DIR/${m%%:*}" "${m#*:}"); done
  mkdir -p /var/log/swtpm
  # shellcheck disable=SC2016 # expanded by the inner bash
  unshare --mount --propagation slave -- /bin/bash -euc '
    hide=$1 hidden=$2; shift 2
    if [[ $hide == 1 ]]; then mount --bind "$hidden" /dev/kvm; fi
    while [[ $# -gt 0 ]]; do mount --bind "$1" "$2"; shift 2; done
    LIBVIRT_LOG_OUTPUTS="3:file:/var/log/libvirt/virtlogd.log" virtlogd -d --pid-file /run/libvirt/virtlogd.pid
    LIBVIRT_LOG_OUTPUTS="3:file:/var/log/libvirt/libvirtd.log" libvirtd -d --pid-file /run/libvirt/libvirtd.pid
  ' host.sh-namespace "$hide" "$HCI_STATE/kvm-hidden" "${binds[@]}" </dev/null
  wait_for 60 "libvirtd of $ID to answer on $URI" libvirt_answers "$URI" ||
    die "libvirtd of $ID did not come up (see $DIR/log/libvirtd.log)"
  log "$ID started: libvirtd pid $(cat "$LPID"), virtlogd pid $(cat "$VPID")"
  echo "$URI"
}

down_daemons() {
  local f name pid
  for f in "$LPID:libvirtd" "$VPID:virtlogd"; do
    name=${f#*:} f=${f%%:*}
    if pid=$(pid_of_daemon "$f" "$name"); then
      stop_pid "$ID: $name" "$pid"
    fi
    rm -f "$f"
  done
}

down() {
  if pid_of_daemon "$LPID" libvirtd >/dev/null && libvirt_answers "$URI"; then
    local running
    running=$(virsh -c "$URI" list --name 2>/dev/null | sed '/^$/d' || true)
    [[ -z $running ]] || echo "libvirt-host: warning: $ID still runs domains (their QEMU keeps running): $(echo "$running" | paste -sd ' ' -)" >&2
  fi
  down_daemons
  if [[ $PURGE == --purge ]]; then
    rm -rf "$DIR"
    log "$ID: $DIR removed"
  fi
}

case $CMD in
  up) up ;;
  down) down ;;
  uri) echo "$URI" ;;
  *) usage ;;
esac
