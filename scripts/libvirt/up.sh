#!/usr/bin/env bash
# up.sh: brings up libvirt (libvirtd + virtlogd, QEMU driver, qemu:///system) on a Debian 12 machine
# that has no systemd as PID 1, as root. Idempotent: a second run finds the daemons running (pid file,
# /proc and the socket answering) and only reports.
#
#   scripts/libvirt/up.sh [--no-install]
#
# 1. Installs the Debian packages that the agent work needs (libvirt, QEMU for x86_64 and ppc64,
#    OVMF/AAVMF/SLOF firmware, swtpm, libvirt-dev for the `virt` crate, RBD support, busybox/cpio for
#    the test guest). Package scripts are kept from starting services (policy-rc.d answers 101 while
#    apt runs). Returns within a second when everything is installed. --no-install skips this step.
# 2. Edits /etc/libvirt/qemu.conf: `namespaces = []` (no per-VM mount namespace); removes the autostart
#    link of libvirt's "default" NAT network (no dnsmasq, no virbr0, no iptables rules of libvirt's own).
# 3. Decides between KVM and TCG: KVM when /dev/kvm opens and QEMU starts with -accel kvm. When KVM is
#    not usable but /dev/kvm exists, libvirt would re-probe QEMU on every define (~40 s here), so the
#    daemons are started in a private mount namespace in which an empty file is bind-mounted over
#    /dev/kvm. Every other process on the host still sees the real /dev/kvm.
# 4. Starts virtlogd and libvirtd (-d, their default pid files /run/virtlogd.pid and /run/libvirtd.pid,
#    no socket activation), waits until `virsh -c qemu:///system version` answers, and prints the
#    accelerator that domcapabilities reports (kvm or tcg) and the libvirt version.
#
# Stop with scripts/libvirt/down.sh. Daemon logs: /var/log/libvirt/libvirtd.log, virtlogd.log; each
# domain's QEMU log: /var/log/libvirt/qemu/NAME.log.
set -euo pipefail

LOG_PREFIX=libvirt-up
# shellcheck source=scripts/libvirt/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

export DEBIAN_FRONTEND=noninteractive

# Every QEMU package must come from the same source package version (Debian 12's qemu-utils from
# backports, 10.0, Breaks qemu-system-common < 8.0); they are pinned to qemu-system-x86's version.
QEMU_PACKAGES=(qemu-system-x86 qemu-system-ppc qemu-system-common qemu-utils qemu-block-extra)
PACKAGES=(
  libvirt-daemon-system libvirt-daemon-system-sysv # the daemons; -sysv: no systemd units/package pulled in
  libvirt-clients                                  # virsh
  libvirt-dev pkg-config                           # the `virt` crate's build links libvirt
  "${QEMU_PACKAGES[@]}"                            # qemu-system-ppc: ppc64le pseries; SLOF comes in qemu-system-data
  ovmf qemu-efi-aarch64                            # UEFI firmware: x86_64 (OVMF), aarch64 (AAVMF)
  swtpm swtpm-tools                                # vTPM
  libvirt-daemon-driver-storage-rbd                # Ceph RBD storage pools (qemu-block-extra: RBD disks)
  dnsmasq-base                                     # DHCP for the agent's networks
  busybox-static cpio                              # the test guest's initramfs (scripts/guest/build.sh)
  util-linux iproute2 procps                       # unshare, ip, pgrep
)

# ---------------------------------------------------------------------------------------------------
# 1. packages

installed_version() { dpkg-query -W -f='${db:Status-Status} ${Version}\n' "$1" 2>/dev/null | awk '$1 == "installed" { print $2 }'; }

packages_ok() {
  local p
  for p in "${PACKAGES[@]}"; do
    [[ -n $(installed_version "$p") ]] || return 1
  done
  # One QEMU version across the QEMU packages.
  local v
  v=$(installed_version qemu-system-x86)
  for p in "${QEMU_PACKAGES[@]}"; do
    [[ $(installed_version "$p") == "$v" ]] || return 1
  done
}

candidate() { apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }'; }

install_packages() {
  [[ $EUID -eq 0 ]] || die "packages missing and not running as root"
  log "apt-get update"
  apt-get update -q >/dev/null
  local v
  v=$(candidate qemu-system-x86)
  [[ -n $v && $v != "(none)" ]] || die "no installation candidate for qemu-system-x86 (is this Debian 12?)"
  local -a args=() p
  for p in "${PACKAGES[@]}"; do
    if [[ " ${QEMU_PACKAGES[*]} " == *" $p "* ]]; then args+=("$p=$v"); else args+=("$p"); fi
  done

  local policy=/usr/sbin/policy-rc.d saved=""
  if [[ -e $policy ]]; then
    saved=$(mktemp)
    cp -p "$policy" "$saved"
  fi
  # shellcheck disable=SC2064 # expand now: put back exactly this state on any exit
  trap "if [[ -n '$saved' ]]; then mv -f '$saved' '$policy'; else rm -f '$policy'; fi" EXIT
  printf '#!/bin/sh\n# written by hci scripts/libvirt/up.sh while apt runs\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  log "apt-get install (QEMU pinned to $v; this replaces a newer qemu-utils from backports if present)"
  # --allow-downgrades: the machine image may carry qemu-utils 10.0 from bookworm-backports, which
  # cannot live beside Debian 12's qemu-system 7.2. --no-remove: never let apt remove anything.
  apt-get install -y -q --no-install-recommends --allow-downgrades --no-remove "${args[@]}"
  if [[ -n $saved ]]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
  trap - EXIT
}

# ---------------------------------------------------------------------------------------------------
# 2. configuration

configure() {
  local conf=/etc/libvirt/qemu.conf
  [[ -f $conf ]] || die "$conf missing (libvirt-daemon-driver-qemu not installed?)"
  if grep -Eq '^[[:space:]]*namespaces[[:space:]]*=[[:space:]]*\[[[:space:]]*\][[:space:]]*$' "$conf"; then
    :
  elif grep -Eq '^[[:space:]]*namespaces[[:space:]]*=' "$conf"; then
    sed -i -E 's/^[[:space:]]*namespaces[[:space:]]*=.*/namespaces = []/' "$conf"
    log "set namespaces = [] in $conf"
  else
    printf '\n# hci (scripts/libvirt/up.sh): no private mount namespace per VM\nnamespaces = []\n' >>"$conf"
    log "added namespaces = [] to $conf"
  fi
  # libvirt's own NAT network would start dnsmasq and add iptables rules on every libvirtd start;
  # the agent brings its own networks.
  local link=/etc/libvirt/qemu/networks/autostart/default.xml
  if [[ -L $link || -e $link ]]; then
    rm -f "$link"
    log "disabled autostart of libvirt's default network"
  fi
  mkdir -p "$HCI_STATE" /var/log/libvirt
}

# ---------------------------------------------------------------------------------------------------
# 3. KVM or TCG

# kvm_usable and kvm_permissions are in common.sh (host.sh decides the same way).

# ---------------------------------------------------------------------------------------------------
# 4. daemons

start_daemons() {
  local hide=$1 want_virtlogd=$2 want_libvirtd=$3
  if [[ $hide == 1 ]]; then
    : >"$HCI_STATE/kvm-hidden"   # the empty file that stands in for /dev/kvm inside the namespace
    chmod 600 "$HCI_STATE/kvm-hidden"
  fi
  # --propagation slave: mounts made on the host later still reach the daemons where the host's
  # mounts are shared (on this machine they are all private), and the bind mount below never leaves
  # the namespace. Both daemons fork into the background and keep the namespace alive.
  # shellcheck disable=SC2016 # expanded by the inner bash
  unshare --mount --propagation slave -- /bin/bash -euc '
    hide=$1 hidden=$2 want_virtlogd=$3 want_libvirtd=$4
    if [[ $hide == 1 ]]; then mount --bind "$hidden" /dev/kvm; fi
    if [[ $want_virtlogd == 1 ]]; then
      LIBVIRT_LOG_OUTPUTS="3:file:/var/log/libvirt/virtlogd.log" virtlogd -d
    fi
    if [[ $want_libvirtd == 1 ]]; then
      LIBVIRT_LOG_OUTPUTS="3:file:/var/log/libvirt/libvirtd.log" libvirtd -d
    fi
  ' up.sh-namespace "$hide" "$HCI_STATE/kvm-hidden" "$want_virtlogd" "$want_libvirtd" </dev/null
}

accelerator() {
  if virsh -c "$LIBVIRT_URI" domcapabilities --virttype kvm --arch x86_64 >/dev/null 2>&1; then
    echo kvm
  elif virsh -c "$LIBVIRT_URI" domcapabilities --virttype qemu --arch x86_64 >/dev/null 2>&1; then
    echo tcg
  else
    echo "none (domcapabilities failed for kvm and qemu)"
  fi
}

main() {
  if [[ ${1:-} != --no-install ]]; then
    packages_ok || install_packages
    packages_ok || die "packages still missing or QEMU versions mixed after apt-get install"
  fi
  configure

  local lv_pid vl_pid
  lv_pid=$(pid_of_daemon "$LIBVIRTD_PID" libvirtd || true)
  vl_pid=$(pid_of_daemon "$VIRTLOGD_PID" virtlogd || true)

  if [[ -n $lv_pid && -n $vl_pid ]] && libvirt_answers "$LIBVIRT_URI"; then
    log "already running: libvirtd pid $lv_pid, virtlogd pid $vl_pid ($(cat "$HCI_STATE/mode" 2>/dev/null || echo "mode unknown"))"
  else
    local hide=0 mode
    if kvm_usable; then
      kvm_permissions
      mode="kvm: $KVM_WHY; /dev/kvm left visible"
    elif [[ -e /dev/kvm ]]; then
      hide=1 mode="tcg: $KVM_WHY; /dev/kvm hidden from the daemons (private mount namespace)"
    else
      mode="tcg: $KVM_WHY"
    fi
    # Stale pid files (no live daemon of that name) would make the daemons refuse to start.
    [[ -n $lv_pid ]] || rm -f "$LIBVIRTD_PID"
    [[ -n $vl_pid ]] || rm -f "$VIRTLOGD_PID"
    if [[ -n $lv_pid ]]; then
      # A libvirtd that does not answer: leave it to the operator rather than start a second one.
      wait_for 30 "libvirtd (pid $lv_pid) to answer on $LIBVIRT_URI" libvirt_answers ||
        die "libvirtd pid $lv_pid runs but does not answer; run scripts/libvirt/down.sh, then up.sh again"
    fi
    log "$mode; starting${vl_pid:+ (virtlogd already running)}${lv_pid:+ (libvirtd already running)}"
    start_daemons "$hide" "$([[ -z $vl_pid ]] && echo 1 || echo 0)" "$([[ -z $lv_pid ]] && echo 1 || echo 0)"
    echo "$mode" >"$HCI_STATE/mode"
    wait_for 10 "virtlogd pid file" pid_of_daemon "$VIRTLOGD_PID" virtlogd || die "virtlogd did not start (see /var/log/libvirt/virtlogd.log)"
    wait_for 60 "libvirtd to answer on $LIBVIRT_URI" libvirt_answers || die "libvirtd did not come up (see /var/log/libvirt/libvirtd.log)"
    lv_pid=$(pid_of_daemon "$LIBVIRTD_PID" libvirtd) || die "libvirtd answers but $LIBVIRTD_PID does not name it"
    vl_pid=$(pid_of_daemon "$VIRTLOGD_PID" virtlogd)
    log "started: libvirtd pid $lv_pid, virtlogd pid $vl_pid"
  fi

  local version
  version=$(virsh -c "$LIBVIRT_URI" version 2>/dev/null |
    awk -F': ' '/Using library/ { l = $2 } /Running hypervisor/ { h = $2 } END { print l ", " h }')
  log "accelerator (domcapabilities): $(accelerator); $version"
}

main "$@"
