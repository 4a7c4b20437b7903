#!/usr/bin/env bash
# build.sh: builds the kernel and initrd of the LVM test VM (scripts/lvm-vm/run.sh), a QEMU guest in
# which the tests that need kernel features the host lacks run: the LVM-thin tests on hosts whose own
# kernel has no device-mapper, the VLAN zone test on hosts without 802.1Q (this project's reference
# machine lacks both: no dm modules, no /dev/mapper/control, no CONFIG_VLAN_8021Q).
#
#   scripts/lvm-vm/build.sh [OUT_DIR]      default $HCI_LVM_VM_CACHE, else /var/cache/hci-lvm-vm
#
# Outputs (OUT_DIR is created):
#   vmlinuz      Debian 12's generic kernel (the image package linux-image-amd64 depends on). Not the
#                cloud kernel of scripts/guest/build.sh: that one is built without 9p.
#   initrd.img   busybox-static + scripts/lvm-vm/init + the modules the guest needs, with their
#                dependencies (virtio_pci, 9pnet_virtio, 9p, overlay, loop, dm_thin_pool and dm_snapshot:
#                dm-mod, dm-bufio, dm-bio-prison, dm-persistent-data, libcrc32c; virtio_blk, ext4;
#                8021q, veth and nftables with conntrack and named counters for the VLAN zone test)
#   inputs.txt   what they were built from (format version, package versions, hashes of the scripts)
#
# There is no root file system image: the guest mounts the host's own / read-only over 9p, with a
# tmpfs overlay on top (see init), so the tests run with exactly the host's lvm2,
# thin-provisioning-tools, qemu-img, util-linux and glibc, as they would natively.
#
# The packages are Debian's, at their exact candidate versions, downloaded once with apt-get download
# into $HCI_GUEST_CACHE (default /var/cache/hci-guest, the download cache scripts/guest/build.sh uses)
# and unpacked with dpkg-deb, never installed. A second run with unchanged inputs returns at once (a
# new kernel or busybox in the archive, or a change to this script or init, rebuilds). The initrd is
# reproducible (sorted cpio, fixed timestamps, gzip -n).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_PREFIX=lvm-vm-build
# shellcheck source=scripts/libvirt/common.sh
source "$HERE/../libvirt/common.sh" # log, die
# shellcheck source=scripts/kmod.sh
source "$HERE/../kmod.sh" # copy_modules
# shellcheck source=scripts/apt.sh
source "$HERE/../apt.sh" # tools_missing, apt_install

OUT=${1:-${HCI_LVM_VM_CACHE:-/var/cache/hci-lvm-vm}}
DEBS=${HCI_GUEST_CACHE:-/var/cache/hci-guest}
# The layout version of the outputs: part of inputs.txt, so a change here rebuilds every cache.
FORMAT=2
EPOCH=1700000000
KERNEL_META=linux-image-amd64
# dm_snapshot: lvcreate --snapshot checks for the snapshot target even when it makes a thin snapshot.
# virtio_blk, ext4: the scratch disk for /var/tmp.
# 8021q, veth, nft_ct (nf_tables, nf_conntrack), nft_objref (named counters): the VLAN zone test (agent/tests/network_netns.rs).
# No modprobe runs in the guest, so nothing is autoloaded: every module a test needs is listed.
MODULES=(virtio_pci 9pnet_virtio 9p overlay loop dm_thin_pool dm_snapshot virtio_blk ext4 8021q veth nft_ct nft_objref)
# Only these parts of the kernel package are unpacked (it holds 400 MB of modules).
KERNEL_PARTS=('./boot/vmlinuz-*' './lib/modules/*/modules.builtin' './lib/modules/*/modules.builtin.modinfo'
  './lib/modules/*/modules.order'
  './lib/modules/*/kernel/drivers/virtio/*' './lib/modules/*/kernel/net/9p/*' './lib/modules/*/kernel/fs/9p/*'
  './lib/modules/*/kernel/fs/netfs/*' './lib/modules/*/kernel/fs/fscache/*' './lib/modules/*/kernel/fs/overlayfs/*'
  './lib/modules/*/kernel/drivers/block/loop.ko' './lib/modules/*/kernel/drivers/md/*' './lib/modules/*/kernel/lib/*'
  './lib/modules/*/kernel/crypto/*' './lib/modules/*/kernel/arch/x86/crypto/*'
  './lib/modules/*/kernel/drivers/block/virtio_blk.ko' './lib/modules/*/kernel/fs/ext4/*' './lib/modules/*/kernel/fs/jbd2/*'
  './lib/modules/*/kernel/fs/mbcache.ko'
  './lib/modules/*/kernel/net/8021q/*' './lib/modules/*/kernel/net/802/*' './lib/modules/*/kernel/net/llc/*'
  './lib/modules/*/kernel/drivers/net/veth.ko' './lib/modules/*/kernel/net/netfilter/*'
  './lib/modules/*/kernel/net/ipv4/netfilter/*' './lib/modules/*/kernel/net/ipv6/netfilter/*')
export DEBIAN_FRONTEND=noninteractive LC_ALL=C TZ=UTC SOURCE_DATE_EPOCH=$EPOCH

ensure_tools() {
  local -a need
  mapfile -t need < <(tools_missing cpio:cpio depmod:kmod gzip:gzip apt-get:apt dpkg-deb:dpkg)
  apt_install "${need[@]}"
}

kernel_package() {
  apt-cache depends "$KERNEL_META" 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}

# Prints "NAME=CANDIDATE" for the kernel image package and busybox-static.
resolve_packages() {
  local kpkg p v
  kpkg=$(kernel_package)
  if [[ -z $kpkg ]]; then
    log "apt-get update (no package lists)"
    apt-get update -q >/dev/null
    kpkg=$(kernel_package)
  fi
  [[ -n $kpkg ]] || die "cannot resolve $KERNEL_META"
  for p in "$kpkg" busybox-static; do
    v=$(apt-cache policy "$p" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
    [[ -n $v && $v != "(none)" ]] || die "no candidate version of $p"
    echo "$p=$v"
  done
}

# fetch PKG=VERSION: prints the path of its .deb in $DEBS, downloading it when absent.
fetch() {
  local spec=$1 p v f
  p=${spec%%=*} v=${spec#*=}
  f="$DEBS/${p}_${v//:/%3a}_amd64.deb" # apt-get download's file name
  if [[ ! -f $f ]]; then
    mkdir -p "$DEBS"
    (cd "$DEBS" && apt-get -q -o APT::Sandbox::User=root download "$spec" >/dev/null) || die "apt-get download $spec failed"
    [[ -f $f ]] || die "downloaded $spec but cannot find $f"
  fi
  echo "$f"
}

build_initrd() { # build_initrd KERNEL_ROOT KVER BUSYBOX OUTFILE
  local kroot=$1 kver=$2 busybox=$3 outfile=$4
  local root=$WORK/initrd
  mkdir -p "$root/bin" "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/lower" "$root/rw" "$root/root"
  cp "$busybox" "$root/bin/busybox"
  install -m 755 "$HERE/init" "$root/init"
  # Load order (soft dependencies included, first occurrence wins); init insmods them in this order.
  copy_modules "$kroot" "$kver" "$root" "$root/etc/modules" "$WORK" "${MODULES[@]}"
  echo "$kver" >"$root/etc/kernel-release"
  find "$root" -exec touch -h -d "@$EPOCH" {} +
  (cd "$root" && find . -mindepth 1 | sort | cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -9 -n >"$outfile"
}

main() {
  ensure_tools
  local -a pkgs
  mapfile -t pkgs < <(resolve_packages)
  [[ ${#pkgs[@]} -eq 2 ]] || die "cannot resolve the packages"
  local inputs o uptodate=1
  inputs=$(
    echo "format $FORMAT"
    printf '%s\n' "${pkgs[@]}"
    echo "build.sh $(sha256sum <"$HERE/build.sh" | cut -d' ' -f1)"
    echo "init $(sha256sum <"$HERE/init" | cut -d' ' -f1)"
  )
  for o in vmlinuz initrd.img inputs.txt; do [[ -f $OUT/$o ]] || uptodate=0; done
  if [[ $uptodate == 1 && $(cat "$OUT/inputs.txt") == "$inputs" ]]; then
    log "up to date: $OUT ($(sed -n 2p "$OUT/inputs.txt"))"
    return 0
  fi

  WORK=$(mktemp -d /tmp/hci-lvm-vm-build.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
  local kdeb bbdeb kver
  kdeb=$(fetch "${pkgs[0]}")
  bbdeb=$(fetch "${pkgs[1]}")
  mkdir -p "$WORK/kernel" "$WORK/busybox"
  dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$WORK/kernel" --wildcards "${KERNEL_PARTS[@]}"
  dpkg-deb -x "$bbdeb" "$WORK/busybox"
  kver=$(ls "$WORK/kernel/lib/modules")
  [[ -f $WORK/kernel/boot/vmlinuz-$kver ]] || die "no /boot/vmlinuz-$kver in ${pkgs[0]}"

  mkdir -p "$OUT"
  rm -f "$OUT/inputs.txt"
  build_initrd "$WORK/kernel" "$kver" "$WORK/busybox/bin/busybox" "$WORK/initrd.img"
  cp "$WORK/kernel/boot/vmlinuz-$kver" "$WORK/vmlinuz"
  for o in vmlinuz initrd.img; do mv -f "$WORK/$o" "$OUT/$o"; done
  echo "$inputs" >"$OUT/inputs.txt"
  log "built $OUT: kernel $kver, initrd $(stat -c %s "$OUT/initrd.img") bytes ($(wc -l <"$WORK/initrd/etc/modules") modules)"
}

main "$@"
