#!/usr/bin/env bash
# up.sh: a one-node Ceph cluster (Debian 12's Ceph 16) in DIR, for tests, as root and without
# systemd. Idempotent: a second run finds the daemons running and only waits for health; a cluster
# whose daemons were stopped is started again from its data in DIR.
#
#   scripts/ceph/up.sh DIR        prints progress, then as its last line the monitor address (IP:PORT)
#   scripts/ceph/down.sh DIR [--purge]
#
# The cluster: its own fsid; one monitor (mon.a) on 127.0.0.1 at a free port that the kernel picks
# (legacy v1 protocol only, so that a plain "127.0.0.1:PORT" means that port to every client: librbd
# reads a bare address with a port other than 3300 as v1); one mgr (mgr.x); one OSD (osd.0, bluestore
# on a 4 GiB sparse file DIR/osd.0/block, made without ceph-volume); authentication off; pools of
# size 1; an RBD pool `hci`. DIR/ceph.conf serves the `ceph` and `rbd` CLIs (`-c DIR/ceph.conf`);
# QEMU and libvirt need only the monitor address (no auth). Pid files, admin sockets and logs are in
# DIR/run and DIR/log. Waits (with a deadline) for HEALTH_OK with every placement group
# active+clean.
#
# Packages: ceph-mon ceph-mgr ceph-osd ceph-common (installed when missing, with a policy-rc.d
# answering 101 while apt runs so nothing starts by itself).
set -euo pipefail

LOG_PREFIX=ceph-up
# shellcheck source=scripts/ceph/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

export DEBIAN_FRONTEND=noninteractive
PACKAGES=(ceph-mon ceph-mgr ceph-osd ceph-common)
OSD_SIZE=$((4 << 30))
HEALTH_DEADLINE=${HCI_CEPH_DEADLINE:-180}

[[ $# -eq 1 && -n $1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
[[ $EUID -eq 0 ]] || die "run as root"
DIR=$(realpath -m -- "$1")
CONF=$DIR/ceph.conf

# ---------------------------------------------------------------------------------------------------
# packages

packages_ok() {
  local p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed || return 1
  done
}

install_packages() {
  log "installing ${PACKAGES[*]}"
  apt-get update -q >/dev/null
  local policy=/usr/sbin/policy-rc.d saved=""
  if [[ -e $policy ]]; then
    saved=$(mktemp)
    cp -p "$policy" "$saved"
  fi
  # shellcheck disable=SC2064 # expand now: put back exactly this state on any exit
  trap "if [[ -n '$saved' ]]; then mv -f '$saved' '$policy'; else rm -f '$policy'; fi" EXIT
  printf '#!/bin/sh\n# written by hci scripts/ceph/up.sh while apt runs\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  apt-get install -y -q --no-install-recommends --no-remove "${PACKAGES[@]}"
  if [[ -n $saved ]]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
  trap - EXIT
}

# ---------------------------------------------------------------------------------------------------
# the cluster's files

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ceph_() { timeout 60 ceph -c "$CONF" --connect-timeout 20 "$@"; }

write_conf() {
  local fsid=$1 port=$2
  cat >"$CONF" <<EOF
# One-node test cluster made by hci scripts/ceph/up.sh; remove with scripts/ceph/down.sh $DIR --purge.
[global]
fsid = $fsid
mon_host = v1:127.0.0.1:$port
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
run_dir = $DIR/run
mon_cluster_log_file = $DIR/log/cluster.log
crash_dir = $DIR/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
osd_crush_chooseleaf_type = 0
# One node, one copy, a busy shared disk: none of these is a problem here.
mon_warn_on_pool_no_redundancy = false
mon_warn_on_msgr2_not_enabled = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
mon_data_avail_warn = 2
mon_data_avail_crit = 1

[mon]
mon_data = $DIR/\$name
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
log_file = $DIR/log/\$name.log

[mgr]
mgr_data = $DIR/\$name
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
log_file = $DIR/log/\$name.log

[osd]
osd_data = $DIR/\$name
osd_objectstore = bluestore
# No bluestore_block_path: the block file is then DIR/osd.0/block itself (a path set there would be
# made a symlink to itself).
bluestore_block_create = true
bluestore_block_size = $OSD_SIZE
bluestore_fsck_on_mkfs = false
osd_memory_target = 1073741824
# At start an OSD would place itself in the CRUSH map (and set its device class) with mon commands
# that it can send before it has the monitor's map, with a zero fsid; the monitor then answers
# 'wrong fsid' and the OSD exits (seen in 2 of 4 starts here). up.sh places it once instead.
osd_crush_update_on_start = false
osd_class_update_on_start = false
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
log_file = $DIR/log/\$name.log
EOF
}

# Makes a new cluster in DIR (which is empty, or holds an earlier create that did not finish). The
# monitor's port is free when picked; should another process take it before the monitor binds, the
# monitor fails to start and the next run of up.sh starts over with a new port.
create_cluster() {
  local fsid port
  fsid=$(cat /proc/sys/kernel/random/uuid)
  port=$(free_port)
  log "creating cluster $fsid in $DIR (mon on 127.0.0.1:$port)"
  echo creating >"$DIR/$STAMP"
  mkdir -p "$DIR/run" "$DIR/log" "$DIR/crash" "$DIR/mon.a" "$DIR/mgr.x" "$DIR/osd.0"
  write_conf "$fsid" "$port"
  echo "127.0.0.1:$port" >"$DIR/mon-addr"
  monmaptool --create --fsid "$fsid" --addv a "[v1:127.0.0.1:$port]" "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" >/dev/null
  start_daemon mon.a ceph-mon
  wait_for 60 "the monitor to answer" ceph_ mon stat || die "the monitor did not answer (see $DIR/log/mon.a.log)"
  start_daemon mgr.x ceph-mgr
  # A monitor busy with the new mgr can refuse a command for a moment ("EPERM: problem getting command
  # descriptions from mon"): both commands are idempotent, so they are retried until a deadline.
  local uuid id out
  uuid=$(cat /proc/sys/kernel/random/uuid)
  wait_for 30 "the monitor to take 'osd new'" ceph_ osd new "$uuid" || die "ceph osd new: $(ceph_ osd new "$uuid" 2>&1)"
  id=$(ceph_ osd new "$uuid")
  [[ $id == 0 ]] || die "ceph osd new gave id '$id', not 0"
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" >"$DIR/log/osd.0.mkfs.log" 2>&1 ||
    die "ceph-osd --mkfs failed (see $DIR/log/osd.0.mkfs.log)"
  if ! wait_for 30 "the monitor to take 'osd crush add'" ceph_ osd crush add osd.0 1.0 root=default; then
    out=$(ceph_ osd crush add osd.0 1.0 root=default 2>&1) || die "ceph osd crush add osd.0: $out"
  fi
  start_daemon osd.0 ceph-osd
  echo ready >"$DIR/$STAMP"
}

# ---------------------------------------------------------------------------------------------------
# daemons

start_daemon() {
  local name=$1 binary=$2
  if pid_of "$DIR" "$name" "$binary" >/dev/null; then return 0; fi
  rm -f "$DIR/run/$name.pid"
  # The daemon forks into the background and writes its pid file.
  "$binary" -c "$CONF" -i "${name#*.}" </dev/null >>"$DIR/log/$name.out" 2>&1 ||
    die "$binary -i ${name#*.} failed to start (see $DIR/log/$name.log and $name.out)"
  wait_for 30 "$name's pid file" pid_of "$DIR" "$name" "$binary" || die "$name did not start (see $DIR/log/$name.log)"
  log "$name started (pid $(pid_of "$DIR" "$name" "$binary"))"
}

# HEALTH_OK, the OSD up and in, and every placement group active+clean.
healthy() {
  ceph_ status -f json | python3 -c '
import json, sys
s = json.load(sys.stdin)
pgs = s["pgmap"]
clean = sum(x["count"] for x in pgs.get("pgs_by_state", []) if x["state_name"] == "active+clean")
ok = (s["health"]["status"] == "HEALTH_OK" and s["osdmap"]["num_up_osds"] == 1
      and s["osdmap"]["num_in_osds"] == 1 and clean == pgs["num_pgs"])
sys.exit(0 if ok else 1)'
}

ensure_pool() {
  if ! ceph_ osd pool ls | grep -qx hci; then
    local out
    out=$(ceph_ osd pool create hci 8 8 2>&1) || die "ceph osd pool create hci: $out"
    out=$(timeout 120 rbd -c "$CONF" pool init hci 2>&1) || die "rbd pool init hci: $out"
    log "RBD pool hci created"
  fi
}

main() {
  local started=$SECONDS
  packages_ok || install_packages
  packages_ok || die "packages still missing after apt-get install: ${PACKAGES[*]}"
  mkdir -p "$DIR"
  case $(cat "$DIR/$STAMP" 2>/dev/null || true) in
    ready) ;;
    creating)
      log "an earlier create in $DIR did not finish; starting over"
      "$(dirname "${BASH_SOURCE[0]}")/down.sh" "$DIR" >/dev/null
      find "$DIR" -mindepth 1 -delete
      create_cluster
      ;;
    *)
      [[ -z $(ls -A "$DIR") ]] || die "$DIR is not empty and not a cluster made by this script; refusing to use it"
      create_cluster
      ;;
  esac
  local d
  for d in "${DAEMONS[@]}"; do start_daemon "${d%%:*}" "${d#*:}"; done
  ensure_pool
  if ! wait_for "$HEALTH_DEADLINE" "HEALTH_OK with every PG active+clean" healthy; then
    ceph_ status >&2 || true
    die "the cluster did not become healthy within ${HEALTH_DEADLINE}s (logs in $DIR/log)"
  fi
  log "healthy after $((SECONDS - started)) s; ceph -c $CONF status"
  cat "$DIR/mon-addr"
}

main
