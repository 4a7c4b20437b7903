#!/usr/bin/env bash
# check.sh: boots the test guest that scripts/guest/build.sh made and checks it for real.
#
#   scripts/guest/check.sh GUEST_DIR [MODE...]
#
# MODE (default: bios uefi):
#   bios      QEMU directly, SeaBIOS, i440fx, disk.qcow2 (copy-on-write overlay) + a blank data disk
#   uefi      QEMU directly, OVMF (OVMF_CODE_4M.fd, a copy of OVMF_VARS_4M.fd), q35
#   uefi-sb   QEMU directly, OVMF with Secure Boot enforced (secboot code, MS-key vars, SMM), q35
#   pseries   QEMU directly, ppc64le pseries under TCG, SLOF, direct kernel boot of the ppc64el build
#             (GUEST_DIR from HCI_GUEST_ARCH=ppc64el build.sh), the data disk as the only disk
#   pseries-disk  the same, but booted from disk-ppc64le.qcow2 by the firmware: SLOF -> the PReP
#             partition's GRUB (ieee1275) -> kernel + initrd from the disk; the settings (marker) on
#             the data disk's second sector, since pseries has no SMBIOS
#   libvirt-bios, libvirt-uefi, libvirt-uefi-sb (the last with a vTPM 2.0 too), libvirt-pseries
#             the same through libvirt (needs scripts/libvirt/up.sh first): virsh define of
#             scripts/guest/domain-example.xml (domain-pseries-example.xml), start, console log read,
#             virsh shutdown (ACPI; EPOW on pseries) until shut off, undefine
#   libvirt-net  BIOS through libvirt with a virtio NIC on an unmanaged tap that is moved into a
#             network namespace of its own after start; checks ping, HTTP :8080 and echo :7 from there
#
# For each mode: waits (deadline, no fixed sleeps) for HCI-GUEST-READY on the serial console, checks
# HCI-GUEST-BOOTED (and its firmware=...) and HCI-MARKER-WRITTEN, stops the guest, reads the marker
# back from the data disk with qemu-img, and prints the time from start to HCI-GUEST-READY.
# Accelerator: TCG, or KVM when HCI_ACCEL=kvm. libvirt: qemu:///system, or HCI_LIBVIRT_URI.
# Everything it creates lives in a temp dir it removes.
# shellcheck disable=SC2054 # commas inside QEMU arguments are QEMU's
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ACCEL=${HCI_ACCEL:-tcg}
TIMEOUT=${HCI_BOOT_TIMEOUT:-180}
OVMF=/usr/share/OVMF
# The libvirt instance for the libvirt-* modes (e.g. one of scripts/libvirt/host.sh).
export LIBVIRT_DEFAULT_URI=${HCI_LIBVIRT_URI:-${LIBVIRT_DEFAULT_URI:-qemu:///system}}

[[ $# -ge 1 ]] || { echo "usage: $0 GUEST_DIR [bios|uefi|uefi-sb|pseries|pseries-disk|libvirt-bios|libvirt-uefi|libvirt-uefi-sb|libvirt-net|libvirt-pseries ...]" >&2; exit 2; }
GUEST=$(cd "$1" && pwd); shift
MODES=("$@")
[[ ${#MODES[@]} -gt 0 ]] || MODES=(bios uefi)
for MODE in "${MODES[@]}"; do
  if [[ $MODE == pseries-disk ]]; then
    [[ -f $GUEST/disk-ppc64le.qcow2 ]] || { echo "no $GUEST/disk-ppc64le.qcow2; run HCI_GUEST_ARCH=ppc64el scripts/guest/build.sh $GUEST first" >&2; exit 2; }
  elif [[ $MODE == *pseries ]]; then
    [[ -f $GUEST/vmlinux ]] || { echo "no $GUEST/vmlinux; run HCI_GUEST_ARCH=ppc64el scripts/guest/build.sh $GUEST first" >&2; exit 2; }
  else
    [[ -f $GUEST/disk.qcow2 ]] || { echo "no $GUEST/disk.qcow2; run scripts/guest/build.sh $GUEST first" >&2; exit 2; }
  fi
done

# libvirt's QEMU runs as libvirt-qemu: the work dir must be traversable by it.
WORK=$(mktemp -d /var/tmp/hci-guest-check.XXXXXX)
chmod 755 "$WORK"
QEMU_PID=""
DOMAIN=""
DOMAINS_RUN=() # their QEMU and swtpm logs, which libvirt keeps after undefine, are removed at exit
cleanup() {
  if [[ -n $QEMU_PID ]]; then kill "$QEMU_PID" 2>/dev/null || true; wait "$QEMU_PID" 2>/dev/null || true; fi
  if [[ -n $DOMAIN ]]; then
    virsh -q destroy "$DOMAIN" >/dev/null 2>&1 || true
    virsh -q undefine --nvram --tpm "$DOMAIN" >/dev/null 2>&1 || true
  fi
  for d in "${DOMAINS_RUN[@]}"; do
    if [[ $LIBVIRT_DEFAULT_URI == qemu:///system ]]; then
      rm -f "/var/log/libvirt/qemu/$d.log" "/var/log/swtpm/libvirt/qemu/$d-swtpm.log"
    fi
  done
  if [[ -n ${NETNS:-} ]]; then ip netns del "$NETNS" 2>/dev/null || true; fi
  if [[ -n ${TAP:-} ]]; then ip link del "$TAP" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

FAILED=0
fail() { echo "check[$MODE]: FAIL: $*"; FAILED=1; }

now_ms() { date +%s%3N; }

# wait_line FILE PATTERN SECONDS [PID]: until FILE has a line matching PATTERN.
wait_line() {
  local file=$1 pat=$2 pid=${4:-} deadline=$((SECONDS + $3))
  until grep -aq -- "$pat" "$file" 2>/dev/null; do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

prepare_disks() { # prepare_disks [SETTINGS]: SETTINGS (hci.* words) go to the data disk's second sector
  rm -f "$WORK/os.qcow2" "$WORK/data.qcow2" "$WORK/serial.log"
  local image=$GUEST/disk.qcow2
  [[ $MODE != pseries-disk ]] || image=$GUEST/disk-ppc64le.qcow2
  if [[ -f $image ]]; then
    qemu-img create -q -f qcow2 -b "$image" -F qcow2 "$WORK/os.qcow2"
  fi
  if [[ -n ${1:-} ]]; then
    truncate -s 16M "$WORK/data.raw"
    printf 'HCI-SETTINGS %s\n' "$1" | dd of="$WORK/data.raw" bs=512 seek=1 conv=notrunc status=none
    qemu-img convert -f raw -O qcow2 "$WORK/data.raw" "$WORK/data.qcow2"
    rm -f "$WORK/data.raw"
  else
    qemu-img create -q -f qcow2 "$WORK/data.qcow2" 16M
  fi
}

check_marker() { # check_marker EXPECTED
  qemu-img convert -f qcow2 -O raw "$WORK/data.qcow2" "$WORK/data.raw"
  local got
  got=$(head -c 512 "$WORK/data.raw" | tr -d '\0' | head -n 1)
  rm -f "$WORK/data.raw"
  if [[ $got == "HCI-MARKER $1" ]]; then
    echo "check[$MODE]: data disk holds '$got'"
  else
    fail "data disk holds '$got', expected 'HCI-MARKER $1'"
  fi
}

check_log() { # check_log LOG FIRMWARE MARKER
  local log=$1
  grep -aq "HCI-GUEST-BOOTED firmware=$2" "$log" || fail "no 'HCI-GUEST-BOOTED firmware=$2' on the console"
  grep -aq "HCI-MARKER-WRITTEN $3" "$log" || fail "no 'HCI-MARKER-WRITTEN $3' on the console"
  if grep -aq "HCI-ERROR" "$log"; then fail "$(grep -a HCI-ERROR "$log" | head -n 3)"; fi
  grep -ao 'HCI-.*' "$log" | sed "s/^/check[$MODE]:   /"
}

boot_qemu() { # boot_qemu FIRMWARE(bios|uefi|uefi-sb|pseries|pseries-disk)
  local fw=$1 marker="m-$1-$$" settings=""
  local -a args=(-accel "$ACCEL" -m 512 -smp 1 -nodefaults -display none -no-user-config
    -serial "file:$WORK/serial.log"
    -drive "file=$WORK/os.qcow2,if=virtio,format=qcow2"
    -drive "file=$WORK/data.qcow2,if=virtio,format=qcow2"
    -smbios "type=11,value=hci.marker=$marker" -smbios "type=11,value=hci.name=check-$fw")
  case $fw in
    pseries)
      # No OS disk (direct kernel boot; SLOF runs first), so the data disk is /dev/vda.
      args=(-accel tcg -machine pseries -m 512 -smp 1 -nodefaults -display none -no-user-config
        -serial "file:$WORK/serial.log"
        -kernel "$GUEST/vmlinux" -initrd "$GUEST/initrd.img"
        -append "console=hvc0 panic=5 loglevel=4 hci.disk=/dev/vda hci.name=check-$fw hci.marker=$marker"
        -drive "file=$WORK/data.qcow2,if=none,id=data,format=qcow2" -device virtio-blk-pci,drive=data) ;;
    pseries-disk)
      # SLOF boots the OS disk (bootindex 1) itself; the guest's name comes from -name (device tree).
      settings="hci.marker=$marker hci.heartbeat=0"
      args=(-accel tcg -machine pseries -m 512 -smp 1 -nodefaults -display none -no-user-config
        -name "guest=check-$fw" -serial "file:$WORK/serial.log"
        -drive "file=$WORK/os.qcow2,if=none,id=os,format=qcow2" -device virtio-blk-pci,drive=os,bootindex=1
        -drive "file=$WORK/data.qcow2,if=none,id=data,format=qcow2" -device virtio-blk-pci,drive=data) ;;
    bios) args+=(-machine pc) ;;
    uefi)
      cp "$OVMF/OVMF_VARS_4M.fd" "$WORK/vars.fd"
      args+=(-machine q35
        -drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF/OVMF_CODE_4M.fd"
        -drive "if=pflash,format=raw,unit=1,file=$WORK/vars.fd") ;;
    uefi-sb)
      cp "$OVMF/OVMF_VARS_4M.ms.fd" "$WORK/vars.fd"
      args+=(-machine q35,smm=on -global driver=cfi.pflash01,property=secure,value=on
        -drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF/OVMF_CODE_4M.secboot.fd"
        -drive "if=pflash,format=raw,unit=1,file=$WORK/vars.fd") ;;
  esac
  prepare_disks "$settings"
  local t0; t0=$(now_ms)
  local qemu="qemu-system-x86_64"
  [[ $fw != pseries* ]] || qemu="qemu-system-ppc64"
  "$qemu" "${args[@]}" </dev/null >"$WORK/qemu.out" 2>&1 &
  QEMU_PID=$!
  if wait_line "$WORK/serial.log" HCI-GUEST-READY "$TIMEOUT" "$QEMU_PID"; then
    echo "check[$MODE]: HCI-GUEST-READY after $(( $(now_ms) - t0 )) ms ($ACCEL)"
  else
    fail "no HCI-GUEST-READY within ${TIMEOUT}s; last console lines:"; tail -n 15 "$WORK/serial.log" | cat -v; cat "$WORK/qemu.out"
  fi
  kill "$QEMU_PID" 2>/dev/null || true; wait "$QEMU_PID" 2>/dev/null || true; QEMU_PID=""
  local expect_fw=${fw%-sb}
  [[ $fw != pseries* ]] || expect_fw=of
  check_log "$WORK/serial.log" "$expect_fw" "$marker"
  if [[ $fw == uefi-sb ]]; then
    grep -aq "secureboot=1" "$WORK/serial.log" || fail "the guest did not see Secure Boot enabled"
  fi
  if [[ $fw == pseries-disk ]]; then
    grep -aq "BOOT_IMAGE=/vmlinux.gz" "$WORK/serial.log" || fail "GRUB did not boot the kernel from the disk"
    grep -aq "name=check-$fw" "$WORK/serial.log" || fail "the guest did not take its name from the device tree"
  fi
  check_marker "$marker"
}

check_network() { # from inside the namespace: ping, HTTP on 8080, echo on 7
  if ip netns exec "$NETNS" busybox ping -c 1 -W 5 "$GUEST_IP" >/dev/null; then
    echo "check[$MODE]: ping $GUEST_IP ok"
  else
    fail "ping $GUEST_IP from namespace $NETNS failed"
  fi
  local page echo_reply
  page=$(ip netns exec "$NETNS" curl -sS -m 5 "http://$GUEST_IP:8080/" 2>&1 || true)
  if [[ $page == "HCI-GUEST name=$DOMAIN "* ]]; then
    echo "check[$MODE]: http://$GUEST_IP:8080/ -> $page"
  else
    fail "http://$GUEST_IP:8080/ answered '$page'"
  fi
  echo_reply=$(echo hci-echo | ip netns exec "$NETNS" busybox nc -w 3 "$GUEST_IP" 7 2>&1 || true)
  if [[ $echo_reply == hci-echo ]]; then
    echo "check[$MODE]: echo on $GUEST_IP:7 ok"
  else
    fail "echo on $GUEST_IP:7 answered '$echo_reply'"
  fi
}

boot_libvirt() { # boot_libvirt FIRMWARE(bios|uefi)
  local fw=$1 marker="m-lv$1-$$"
  DOMAIN="hci-check-$fw-$$"
  DOMAINS_RUN+=("$DOMAIN")
  prepare_disks
  : >"$WORK/serial.log"
  local xml=$WORK/domain.xml template=$HERE/domain-example.xml
  [[ $fw != pseries ]] || template=$HERE/domain-pseries-example.xml
  sed -e "s|@NAME@|$DOMAIN|g" -e "s|@KERNEL@|$GUEST/vmlinux|g" -e "s|@INITRD@|$GUEST/initrd.img|g" -e "s|@OS_DISK@|$WORK/os.qcow2|g" -e "s|@DATA_DISK@|$WORK/data.qcow2|g" \
    -e "s|@SERIAL_LOG@|$WORK/serial.log|g" -e "s|@MARKER@|$marker|g" -e "s|@VIRT_TYPE@|${ACCEL/tcg/qemu}|g" \
    "$template" >"$xml"
  case $fw in
    net)
      # A tap that libvirt does not manage (the agent's way: it owns its taps and namespaces).
      sed -i -e "s|<memballoon|<interface type='ethernet'><mac address='52:54:00:99:00:02'/><target dev='$TAP' managed='no'/><model type='virtio'/></interface><memballoon|" \
        -e "s|</oemStrings>|<entry>hci.ip=$GUEST_IP/24</entry><entry>hci.gw=$HOST_IP</entry></oemStrings>|" "$xml" ;;
    uefi)
      # Firmware auto-selection from /usr/share/qemu/firmware/*.json; NVRAM copy under
      # /var/lib/libvirt/qemu/nvram/ (removed by undefine --nvram).
      sed -i -e "s|machine='pc'|machine='q35'|" \
        -e "s|<os>|<os firmware='efi'><firmware><feature enabled='no' name='secure-boot'/></firmware>|" "$xml" ;;
    uefi-sb)
      # Secure Boot with Microsoft's and Debian's keys enrolled, SMM, and a vTPM 2.0 (swtpm).
      sed -i -e "s|machine='pc'|machine='q35'|" \
        -e "s|<os>|<os firmware='efi'><firmware><feature enabled='yes' name='secure-boot'/><feature enabled='yes' name='enrolled-keys'/></firmware>|" \
        -e "s|<acpi/>|<acpi/><smm state='on'/>|" \
        -e "s|<memballoon|<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm><memballoon|" "$xml" ;;
  esac
  local t0 t1
  t0=$(now_ms)
  virsh -q define "$xml" >/dev/null
  t1=$(now_ms)
  virsh -q start "$DOMAIN" >/dev/null
  echo "check[$MODE]: virsh define $((t1 - t0)) ms, start $(( $(now_ms) - t1 )) ms"
  if [[ $fw == net ]]; then
    # QEMU holds the tap open; moved into a namespace of its own, the guest's only peer is there.
    ip link set "$TAP" netns "$NETNS"
    ip -n "$NETNS" link set lo up
    ip -n "$NETNS" addr add "$HOST_IP/24" dev "$TAP"
    ip -n "$NETNS" link set "$TAP" up
  fi
  if wait_line "$WORK/serial.log" HCI-GUEST-READY "$TIMEOUT"; then
    echo "check[$MODE]: HCI-GUEST-READY after $(( $(now_ms) - t0 )) ms from define ($ACCEL)"
  else
    fail "no HCI-GUEST-READY within ${TIMEOUT}s; last console lines:"; tail -n 15 "$WORK/serial.log" | cat -v
  fi
  if [[ $fw == net ]]; then check_network; fi
  # A clean ACPI shutdown: the guest's acpid runs poweroff, busybox init prints HCI-GUEST-SHUTDOWN.
  t0=$(now_ms)
  virsh -q shutdown "$DOMAIN" >/dev/null
  local deadline=$((SECONDS + 60))
  until [[ $(virsh -q domstate "$DOMAIN" 2>/dev/null) == "shut off" ]]; do
    ((SECONDS < deadline)) || { fail "virsh shutdown: still $(virsh -q domstate "$DOMAIN") after 60s"; virsh -q destroy "$DOMAIN" >/dev/null; break; }
    sleep 0.1
  done
  echo "check[$MODE]: virsh shutdown -> shut off in $(( $(now_ms) - t0 )) ms"
  grep -aq HCI-GUEST-SHUTDOWN "$WORK/serial.log" || fail "no HCI-GUEST-SHUTDOWN on the console after virsh shutdown"
  local expect_fw=${fw%-sb}
  [[ $fw != net ]] || expect_fw=bios
  [[ $fw != pseries ]] || expect_fw=of
  check_log "$WORK/serial.log" "$expect_fw" "$marker"
  if [[ $fw == uefi-sb ]]; then
    grep -aq "secureboot=1 tpm=1" "$WORK/serial.log" || fail "the guest did not see Secure Boot and a TPM"
  fi
  virsh -q undefine --nvram --tpm "$DOMAIN" >/dev/null
  DOMAIN=""
  check_marker "$marker"
}

for MODE in "${MODES[@]}"; do
  case $MODE in
    bios | uefi | uefi-sb | pseries | pseries-disk) boot_qemu "$MODE" ;;
    libvirt-bios | libvirt-uefi | libvirt-uefi-sb | libvirt-pseries) boot_libvirt "${MODE#libvirt-}" ;;
    libvirt-net)
      NETNS=hci-chk-$$ TAP=hcichk$$ HOST_IP=10.99.0.1 GUEST_IP=10.99.0.2
      ip netns add "$NETNS"
      ip tuntap add dev "$TAP" mode tap
      boot_libvirt net ;;
    *) echo "unknown mode $MODE" >&2; exit 2 ;;
  esac
done

if [[ $FAILED -ne 0 ]]; then echo "check: FAILED"; exit 1; fi
echo "check: ok (${MODES[*]})"
