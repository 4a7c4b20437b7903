# shellcheck shell=bash
# common.sh: shared by scripts/libvirt/up.sh, down.sh and host.sh (sourced, not run on its own).
# Where the libvirt daemons keep their pid files, how to tell whether a pid file names a live daemon,
# and a deadline-based wait.

# shellcheck disable=SC2034 # used by the scripts that source this
HCI_STATE=/run/hci-libvirt           # our own runtime state: the empty file that hides /dev/kvm, the mode
# shellcheck disable=SC2034
LIBVIRTD_PID=/run/libvirtd.pid       # libvirtd's default pid file when it runs as root
# shellcheck disable=SC2034
VIRTLOGD_PID=/run/virtlogd.pid       # virtlogd's default pid file when it runs as root
LIBVIRT_URI=qemu:///system

log() { echo "${LOG_PREFIX:-libvirt}: $*"; }
die() { echo "${LOG_PREFIX:-libvirt}: error: $*" >&2; exit 1; }

# shellcheck source=scripts/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/../daemon.sh"

# pid_of_daemon PIDFILE NAME: the pid of a live NAME in PIDFILE (see live_pid in scripts/daemon.sh).
pid_of_daemon() { live_pid "$@"; }

libvirt_answers() { timeout 10 virsh -c "${1:-$LIBVIRT_URI}" version >/dev/null 2>&1; }

# kvm_usable: whether QEMU can run ordinary guests with KVM here. HCI_ACCEL=kvm or tcg forces it.
# Hardware KVM means kvm_intel or kvm_amd: this machine's /dev/kvm comes from kvm_pvm (a paravirtual
# KVM that runs only PVM-aware guest kernels; `-machine none -accel kvm` starts, but SeaBIOS ->
# syslinux already stops with "KVM internal error ... emulation failure").
KVM_WHY="" # why kvm_usable decided as it did, for the caller's log
export KVM_WHY
kvm_usable() {
  case ${HCI_ACCEL:-} in
    kvm) KVM_WHY="forced by HCI_ACCEL=kvm"; return 0 ;;
    tcg) KVM_WHY="HCI_ACCEL=tcg"; return 1 ;;
  esac
  [[ -c /dev/kvm ]] || { KVM_WHY="no /dev/kvm"; return 1; }
  if [[ ! -d /sys/module/kvm_intel && ! -d /sys/module/kvm_amd ]]; then
    KVM_WHY="/dev/kvm is not hardware KVM (no kvm_intel/kvm_amd module)"
    [[ ! -d /sys/module/kvm_pvm ]] || KVM_WHY="/dev/kvm is kvm_pvm, not hardware KVM (no kvm_intel/kvm_amd module)"
    return 1
  fi
  { exec {fd}<>/dev/kvm; } 2>/dev/null || { KVM_WHY="/dev/kvm does not open read-write"; return 1; }
  exec {fd}>&-
  # -machine none: no guest at all; `quit` on the monitor ends it at once. Exit 1 when KVM fails.
  local out
  if ! out=$(echo quit | timeout 60 qemu-system-x86_64 -machine none -accel kvm -nodefaults -display none \
    -monitor stdio 2>&1) || [[ $out == *"failed to initialize"* || $out == *"Could not access KVM"* ]]; then
    KVM_WHY="qemu-system-x86_64 -accel kvm fails"
    return 1
  fi
  if [[ -d /sys/module/kvm_intel ]]; then KVM_WHY="hardware KVM (kvm_intel)"; else KVM_WHY="hardware KVM (kvm_amd)"; fi
}

# kvm_permissions: what udev's rule does on a normal host (0660 root:kvm); without it libvirt's QEMU
# user (libvirt-qemu, in group kvm) cannot open /dev/kvm, and libvirt re-probes QEMU on every define.
kvm_permissions() {
  [[ -c /dev/kvm ]] && getent group kvm >/dev/null || return 0
  if [[ $(stat -c '%G %a' /dev/kvm) != "kvm 660" && $(stat -c '%G %a' /dev/kvm) != "kvm 666" ]]; then
    chgrp kvm /dev/kvm && chmod 660 /dev/kvm
    log "/dev/kvm set to root:kvm 0660 (as udev would)"
  fi
}
