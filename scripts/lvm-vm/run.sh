#!/usr/bin/env bash
# run.sh: runs a test executable as root inside a small QEMU VM whose kernel has device-mapper and
# dm-thin. It exists because the LVM-thin backend's tests (agent/tests/volumes_lvm_thin.rs) need real
# LVM on a loop device, and some hosts' kernels (this project's reference machine among them) have no
# device-mapper at all; scripts/test.sh runs them through here on such hosts.
#
#   scripts/lvm-vm/run.sh TEST_BINARY [ARGS...]
#
# Runs `TEST_BINARY --test-threads=1 ARGS...` in the VM, streams its output to stdout and exits with
# its exit status (124: the VM timed out, 125: the VM could not run it). Run as root.
#
# The VM (QEMU, TCG; KVM only where scripts/libvirt/common.sh's kvm_usable finds hardware KVM):
# Debian's generic kernel and a busybox initrd from build.sh (cached in $HCI_LVM_VM_CACHE, default
# /var/cache/hci-lvm-vm; rebuilt when stale), and as its root the host's own / exported read-only over
# 9p under a tmpfs overlay (see init): the guest runs the host's lvm2, thin-provisioning-tools,
# qemu-img/qemu-io and glibc, so a test binary built on the host runs as is. Its loop devices and
# device-mapper devices exist only in the guest; its /var/tmp (where the tests keep the files behind
# their loop devices) is a sparse ext4 image in this run's directory, and nothing else on the host is
# written. The run's directory is removed at the end.
#
# Settings: HCI_LVM_VM_TIMEOUT (seconds, default 1800; the VM is killed after it), HCI_LVM_VM_MEM
# (MiB, default 1024), HCI_LVM_VM_CPUS (default 1: the tests run one at a time, and 2 vCPUs were no
# faster under TCG), HCI_ACCEL=kvm|tcg (forces the accelerator), HCI_LVM_VM_CONSOLE=FILE (keep the
# VM's console log: kernel messages and init's, not the test's output).
# RUST_BACKTRACE (default 1) and RUST_LOG are passed to the test; nothing else of the environment.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_PREFIX=lvm-vm
# shellcheck source=scripts/libvirt/common.sh
source "$HERE/../libvirt/common.sh" # log, die, kvm_usable

CACHE=${HCI_LVM_VM_CACHE:-/var/cache/hci-lvm-vm}
TIMEOUT=${HCI_LVM_VM_TIMEOUT:-1800}
MEM=${HCI_LVM_VM_MEM:-1024}
CPUS=${HCI_LVM_VM_CPUS:-1}

[[ $# -ge 1 ]] || { echo "usage: $0 TEST_BINARY [ARGS...]" >&2; exit 2; }
BIN=$(realpath -e -- "$1") || die "no test binary $1"
shift
[[ -f $BIN && -x $BIN ]] || die "$BIN is not an executable file"
[[ $EUID -eq 0 ]] || die "run as root"
command -v qemu-system-x86_64 >/dev/null 2>&1 ||
  die "qemu-system-x86_64 not found; scripts/libvirt/up.sh installs QEMU (package qemu-system-x86)"
command -v mkfs.ext4 >/dev/null 2>&1 || die "mkfs.ext4 not found; scripts/install-deps.sh installs it (e2fsprogs)"

RUN="" QEMU_PID=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  if [[ -n $QEMU_PID ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
    kill -TERM "$QEMU_PID" 2>/dev/null || true # timeout(1) passes it on to QEMU
    wait "$QEMU_PID" 2>/dev/null || true
  fi
  if [[ -n $RUN ]]; then
    if [[ -n ${HCI_LVM_VM_CONSOLE:-} && -f $RUN/console.log ]]; then cp "$RUN/console.log" "$HCI_LVM_VM_CONSOLE" || true; fi
    rm -rf "$RUN"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Build (or find up to date) the kernel and initrd; one build at a time.
mkdir -p "$CACHE"
exec {lock}>"$CACHE/.lock"
flock "$lock"
"$HERE/build.sh" "$CACHE"
flock -u "$lock"

# This run's directory: under the cache, so the guest sees it through its 9p root (its /tmp and
# /var/tmp are its own). The binary is copied so that a rebuild on the host cannot change it mid-run.
# Directories older than any run can last are left over from a run that was killed (SIGKILL).
find "$CACHE" -maxdepth 1 -name 'run.*' -type d -mmin +$((TIMEOUT / 60 + 10)) -exec rm -rf {} +
RUN=$(mktemp -d "$CACHE/run.XXXXXX")
cp -- "$BIN" "$RUN/test"
# The guest's /var/tmp: a sparse ext4 image (the tests' 2 GiB files are sparse too; discards punch
# holes back into it).
truncate -s 8G "$RUN/scratch.img"
mkfs.ext4 -q -F -L hci-scratch "$RUN/scratch.img"
{
  echo "# written by scripts/lvm-vm/run.sh; run by the VM's init in its chroot"
  echo "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C"
  printf 'export RUST_BACKTRACE=%q\n' "${RUST_BACKTRACE:-1}"
  if [[ -n ${RUST_LOG:-} ]]; then printf 'export RUST_LOG=%q\n' "$RUST_LOG"; fi
  printf 'cd %q 2>/dev/null || cd /\n' "$PWD"
  printf 'exec %q --test-threads=1' "$RUN/test"
  if [[ $# -gt 0 ]]; then printf ' %q' "$@"; fi
  echo
} >"$RUN/cmd"

accel=(-accel tcg -cpu max)
if kvm_usable; then accel=(-accel kvm -cpu host); fi
log "running $(basename "$BIN") in a VM (${accel[1]}: $KVM_WHY; $CPUS vCPU, $MEM MiB, timeout ${TIMEOUT}s)"
t0=$SECONDS
# mitigations=off: without it the kernel isolates page tables (the emulated CPU claims no Meltdown
# immunity), and every system call then flushes TCG's TLB: the tests took 100 s instead of 112 s.
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -nodefaults -no-user-config -machine q35 "${accel[@]}" \
  -smp "$CPUS" -m "$MEM" -display none -monitor none -no-reboot \
  -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.img" \
  -append "console=ttyS0 loglevel=4 panic=-1 mitigations=off hci.run=$RUN" \
  -fsdev local,id=hciroot,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=hciroot,mount_tag=hciroot \
  -drive file="$RUN/scratch.img",format=raw,if=virtio,cache=unsafe,discard=unmap \
  -chardev file,id=console,path="$RUN/console.log" -serial chardev:console \
  -chardev stdio,id=out,signal=off -serial chardev:out \
  -chardev file,id=status,path="$RUN/status" -serial chardev:status \
  </dev/null &
QEMU_PID=$!
qemu_rc=0
wait "$QEMU_PID" || qemu_rc=$?
QEMU_PID=""
elapsed=$((SECONDS - t0))

rc=$(sed -n 's/^HCI-LVM-VM-EXIT \([0-9][0-9]*\).*/\1/p' "$RUN/status" 2>/dev/null | tail -n 1)
if [[ $qemu_rc -eq 124 || $qemu_rc -eq 137 ]]; then
  log "error: the VM did not finish within ${TIMEOUT}s and was killed; its console:" >&2
  tail -n 40 "$RUN/console.log" >&2 || true
  exit 124
fi
if [[ -z $rc ]]; then
  log "error: the VM ended (QEMU exit status $qemu_rc) without reporting an exit status; its console:" >&2
  tail -n 40 "$RUN/console.log" >&2 || true
  exit 125
fi
if [[ $rc -eq 125 ]]; then
  log "error: the VM could not run the test; its console:" >&2
  tail -n 40 "$RUN/console.log" >&2 || true
fi
log "exit status $rc after ${elapsed}s (boot, tests, power-off)"
exit "$rc"
