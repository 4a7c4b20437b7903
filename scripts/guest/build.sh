#!/usr/bin/env bash
# build.sh: builds the hci test guest, a tiny real Linux guest for the agent's tests.
#
#   scripts/guest/build.sh OUT_DIR                          x86_64 (amd64), the default
#   HCI_GUEST_ARCH=ppc64el scripts/guest/build.sh OUT_DIR   ppc64le, for pseries guests
#
# Outputs for amd64 (OUT_DIR is created):
#   vmlinuz       Debian 12's cloud kernel (the image package that linux-image-cloud-amd64 depends on)
#   initrd.img    busybox-static + the virtio/ACPI modules + scripts/guest/init (cpio newc, gzip)
#   disk.qcow2    a 64 MiB bootable disk: MBR, one active FAT partition (type EF) holding the kernel,
#                 the initrd and two boot paths:
#                   BIOS (SeaBIOS): syslinux MBR code -> ldlinux (syslinux.cfg)
#                   UEFI (OVMF, with or without Secure Boot): \EFI\BOOT\BOOTX64.EFI = Debian's signed
#                   shim -> Debian's signed GRUB (\EFI\debian\grub.cfg) -> Debian's signed kernel
#   inputs.txt    what the outputs were built from (package versions, hashes of the scripts)
# Outputs for ppc64el (for pseries guests):
#   vmlinux             Debian 12's powerpc64le kernel (an ELF image), for a direct kernel boot (libvirt
#                       <kernel>/<initrd>/<cmdline>; SLOF still runs first). Command line: "console=hvc0
#                       panic=5 hci.disk=/dev/vda ..." (the data disk is then the first disk).
#   initrd.img          as for amd64, with the ppc64el busybox and modules
#   disk-ppc64le.qcow2  a 64 MiB disk that SLOF boots by itself: MBR, partition 1 a PReP boot partition
#                       (type 41) holding a GRUB powerpc-ieee1275 core image (grub-mkimage from Debian's
#                       grub-common, modules from grub-ieee1275-bin:ppc64el, all built in, prefix
#                       (,msdos2)/boot/grub), partition 2 FAT16 with /vmlinux.gz (the same kernel,
#                       gzip -9n: GRUB decompresses it), /initrd.img and /boot/grub/grub.cfg. Command
#                       line "console=hvc0 panic=5 loglevel=4 hci.boot=of"; the data disk is /dev/vdb.
#   inputs.txt
# Its packages come from a private apt state ($HCI_GUEST_CACHE/apt-ppc64el) over the system's own
# sources, so the system's dpkg architectures are left alone; grub-common (the host's architecture,
# from the system's apt state) is downloaded and unpacked the same way, not installed.
# A second run with unchanged inputs returns at once. The outputs are reproducible: the same inputs
# give the same bytes (fixed timestamps, volume ids, sorted cpio).
#
# Inputs: Debian packages at their exact candidate versions, downloaded once (apt-get download) into
# $HCI_GUEST_CACHE (default /var/cache/hci-guest) and unpacked with dpkg-deb -x, never installed:
# the kernel, busybox-static, syslinux, syslinux-common, shim-signed, grub-efi-amd64-signed (ppc64el:
# grub-ieee1275-bin, and grub-common for the host). The host tools it runs come from installed packages
# (installed when missing): mtools, dosfstools, fdisk, qemu-utils, cpio, kmod (ppc64el: the libraries
# the unpacked grub-mkimage links). No root loop devices, no mounts.
#
# How the guest behaves (console lines, settings through the kernel command line, the data disk's
# HCI-SETTINGS sector (pseries has no SMBIOS) or SMBIOS OEM strings): see scripts/guest/init and
# docs/LIBVIRT.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/kmod.sh
source "$HERE/../kmod.sh" # copy_modules
# shellcheck source=scripts/apt.sh
source "$HERE/../apt.sh" # tools_missing, apt_install
CACHE=${HCI_GUEST_CACHE:-/var/cache/hci-guest}
# The layout version of the outputs: part of inputs.txt, so a change here rebuilds every cache.
# 2: ppc64el also builds disk-ppc64le.qcow2 (SLOF -> PReP -> GRUB ieee1275 disk boot).
FORMAT=2
EPOCH=1700000000             # every timestamp inside the outputs
VOLID=48434931               # FAT volume id ("HCI1")
DISK_ID=0x48434931           # MBR disk signature
DISK_MIB=64
PART_START=2048              # sectors: the partition starts at 1 MiB
PREP_SECTORS=8192            # ppc64el disk: the PReP partition (4 MiB from 1 MiB), then the FAT
PPC_VOLID=48434932           # ppc64el disk: FAT volume id and MBR disk signature ("HCI2")
PPC_DISK_ID=0x48434932
# Kernel command line of both boot paths. hci.* settings for one VM go into SMBIOS OEM strings.
CMDLINE_COMMON="console=tty0 console=ttyS0,115200n8 panic=5 loglevel=4"
ARCH=${HCI_GUEST_ARCH:-amd64}
case $ARCH in
  amd64)
    KERNEL_META=linux-image-cloud-amd64
    EXTRA_PACKAGES=(syslinux syslinux-common shim-signed grub-efi-amd64-signed)
    HOST_PACKAGES=()
    MODULES=(virtio_pci virtio_blk virtio_net virtio_scsi sd_mod virtio_console virtio_balloon virtio_rng
      button evdev efivarfs)
    APT=() ;;
  ppc64el)
    KERNEL_META=linux-image-powerpc64le
    EXTRA_PACKAGES=(grub-ieee1275-bin)
    # Downloaded for the host's architecture and unpacked, never installed: its grub-mkimage.
    HOST_PACKAGES=(grub-common)
    MODULES=(virtio_pci virtio_blk virtio_net virtio_scsi sd_mod virtio_console virtio_balloon virtio_rng)
    # The system's sources, a private package list for ppc64el, no installed-package state.
    APT_STATE=${HCI_GUEST_CACHE:-/var/cache/hci-guest}/apt-ppc64el
    APT=(-o "Dir::State::lists=$APT_STATE/lists" -o APT::Architecture=ppc64el -o APT::Architectures=ppc64el
      -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o Dir::State::status=/dev/null) ;;
  *) echo "HCI_GUEST_ARCH must be amd64 or ppc64el" >&2; exit 2 ;;
esac

log() { echo "guest-build: $*" >&2; }
die() { echo "guest-build: error: $*" >&2; exit 1; }

[[ $# -eq 1 ]] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
OUT=$1
export DEBIAN_FRONTEND=noninteractive LC_ALL=C TZ=UTC SOURCE_DATE_EPOCH=$EPOCH

# ---------------------------------------------------------------------------------------------------
# host tools

ensure_tools() {
  local -a need
  mapfile -t need < <(tools_missing mcopy:mtools mkfs.fat:dosfstools sfdisk:fdisk qemu-img:qemu-utils \
    cpio:cpio depmod:kmod apt-get:apt dpkg-deb:dpkg gzip:gzip)
  local t
  if [[ $ARCH == ppc64el ]]; then
    # The shared libraries of grub-common's grub-mkimage, which runs from its unpacked .deb.
    for t in liblzma5 libdevmapper1.02.1 libselinux1 libudev1; do
      dpkg-query -W -f='${db:Status-Status}\n' "$t" 2>/dev/null | grep -qx installed || need+=("$t")
    done
  fi
  apt_install "${need[@]}"
}

# ---------------------------------------------------------------------------------------------------
# inputs

candidate() { apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }'; }

kernel_package() {
  apt-cache "${APT[@]}" depends "$KERNEL_META" 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}

apt_update() {
  if [[ $ARCH == amd64 ]]; then
    apt-get update -q >/dev/null
  else
    mkdir -p "$APT_STATE/lists/partial"
    # Exit 100 when one index fails (the security suite's ppc64el index has been seen out of sync):
    # fine as long as the main lists came.
    apt-get "${APT[@]}" update -q >/dev/null 2>&1 || true
  fi
}

resolve_packages() {
  local kpkg
  if [[ $ARCH != amd64 && -z $(find "$APT_STATE/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null) ]]; then
    log "apt-get update for $ARCH (private list in $APT_STATE)"
    apt_update
  fi
  kpkg=$(kernel_package)
  if [[ -z $kpkg ]]; then
    log "apt-get update (no package lists)"
    apt_update
    kpkg=$(kernel_package)
  fi
  [[ -n $kpkg ]] || die "cannot resolve $KERNEL_META"
  local -a names=("$kpkg" busybox-static "${EXTRA_PACKAGES[@]}")
  # One apt-cache call: "NAME=CANDIDATE" per package, in this order.
  apt-cache "${APT[@]}" policy "${names[@]}" 2>/dev/null | awk '/^[^ ].*:$/ { p = substr($1, 1, length($1) - 1) } $1 == "Candidate:" { c[p] = $2 }
    END { n = split(ARGV_NAMES, a, " "); for (i = 1; i <= n; i++) { if (c[a[i]] == "" || c[a[i]] == "(none)") { print "MISSING " a[i]; exit 1 } print a[i] "=" c[a[i]] } }' ARGV_NAMES="${names[*]}"
}

# The host's own packages (HOST_PACKAGES), from the system's apt state: "NAME=CANDIDATE" each.
resolve_host_packages() {
  local p v
  for p in "${HOST_PACKAGES[@]}"; do
    v=$(candidate "$p")
    if [[ -z $v || $v == "(none)" ]]; then
      log "apt-get update (no candidate for $p)"
      apt-get update -q >/dev/null 2>&1 || true
      v=$(candidate "$p")
    fi
    [[ -n $v && $v != "(none)" ]] || { echo "MISSING $p"; return 1; }
    echo "$p=$v"
  done
}

# fetch PKG=VERSION [host]: prints the path of its .deb in the cache, downloading it when absent;
# "host": a package of the host's architecture, from the system's apt state.
fetch() {
  local spec=$1 p v f arch=$ARCH
  local -a apt=("${APT[@]}")
  if [[ ${2:-} == host ]]; then arch=$(dpkg --print-architecture) apt=(); fi
  p=${spec%%=*} v=${spec#*=}
  f="$CACHE/${p}_${v//:/%3a}_$arch.deb" # apt-get download's file name
  [[ -f $f ]] || f="$CACHE/${p}_${v//:/%3a}_all.deb"
  if [[ ! -f $f ]]; then
    mkdir -p "$CACHE"
    (cd "$CACHE" && apt-get "${apt[@]}" -q -o APT::Sandbox::User=root download "$spec" >/dev/null) ||
      die "apt-get download $spec failed"
    f="$CACHE/${p}_${v//:/%3a}_$arch.deb"
    [[ -f $f ]] || f="$CACHE/${p}_${v//:/%3a}_all.deb"
    [[ -f $f ]] || die "downloaded $spec but cannot find its .deb in $CACHE"
  fi
  echo "$f"
}

# ---------------------------------------------------------------------------------------------------
# build steps

build_initrd() { # build_initrd KERNEL_ROOT KVER BUSYBOX_ROOT OUTFILE
  local kroot=$1 kver=$2 bbroot=$3 outfile=$4
  local root=$WORK/initrd
  mkdir -p "$root/bin" "$root/etc/hci" "$root/lib/modules/$kver"
  cp "$bbroot/bin/busybox" "$root/bin/busybox"
  install -m 755 "$HERE/init" "$root/init"

  copy_modules "$kroot" "$kver" "$root" "$root/etc/hci/modules" "$WORK" "${MODULES[@]}"

  find "$root" -exec touch -h -d "@$EPOCH" {} +
  (cd "$root" && find . -mindepth 1 | sort | cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -9 -n >"$outfile"
}

build_disk() { # build_disk VMLINUZ INITRD SYSLINUX_ROOT SYSLINUX_COMMON_ROOT SHIM GRUB OUTFILE
  local vmlinuz=$1 initrd=$2 sysroot=$3 syscommon=$4 shim=$5 grub=$6 outfile=$7
  local files=$WORK/esp part=$WORK/part.img raw=$WORK/disk.raw
  local part_sectors=$(((DISK_MIB * 1024 * 1024 / 512) - PART_START))
  mkdir -p "$files/EFI/BOOT" "$files/EFI/debian" "$files/syslinux"
  cp "$vmlinuz" "$files/vmlinuz"
  cp "$initrd" "$files/initrd.img"
  cp "$shim" "$files/EFI/BOOT/BOOTX64.EFI"   # shim loads grubx64.efi from its own directory
  cp "$grub" "$files/EFI/BOOT/grubx64.efi"
  cat >"$files/EFI/debian/grub.cfg" <<EOF
# hci test guest: the UEFI path (shim -> signed GRUB, whose built-in prefix is /EFI/debian)
set timeout=0
set default=0
set gfxpayload=text
menuentry "hci test guest" {
  linux /vmlinuz $CMDLINE_COMMON hci.boot=uefi
  initrd /initrd.img
}
EOF
  cat >"$files/syslinux/syslinux.cfg" <<EOF
# hci test guest: the BIOS path (syslinux MBR -> ldlinux)
SERIAL 0 115200
DEFAULT hci
PROMPT 0
TIMEOUT 0
LABEL hci
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND $CMDLINE_COMMON hci.boot=bios
EOF
  cp "$syscommon/usr/lib/syslinux/modules/bios/ldlinux.c32" "$files/syslinux/"
  find "$files" -exec touch -h -d "@$EPOCH" {} +

  # FAT16 file system in its own image; -h: the partition's start, which the boot sector needs.
  rm -f "$part"
  mkfs.fat -C -F 16 -n HCIBOOT -i "$VOLID" -h "$PART_START" --invariant "$part" $((part_sectors / 2)) >/dev/null
  export MTOOLS_SKIP_CHECK=1
  local d f
  while read -r d; do mmd -i "$part" "::/$d"; done < <(cd "$files" && find . -mindepth 1 -type d | sed 's|^\./||' | sort)
  while read -r f; do mcopy -m -i "$part" "$files/$f" "::/$f"; done < <(cd "$files" && find . -type f | sed 's|^\./||' | sort)
  "$sysroot/usr/bin/syslinux" --install --directory /syslinux "$part"

  rm -f "$raw"
  truncate -s "${DISK_MIB}M" "$raw"
  sfdisk --quiet "$raw" <<EOF
label: dos
label-id: $DISK_ID
unit: sectors

start=$PART_START, size=$part_sectors, type=ef, bootable
EOF
  dd if="$sysroot/usr/lib/SYSLINUX/mbr.bin" of="$raw" bs=440 count=1 conv=notrunc status=none
  dd if="$part" of="$raw" bs=512 seek="$PART_START" conv=notrunc status=none
  qemu-img convert -f raw -O qcow2 "$raw" "$outfile"
}

# build_ppc_disk VMLINUX INITRD GRUB_MODULES_DIR GRUB_MKIMAGE OUTFILE: the pseries disk. SLOF boots the
# ELF in the first PReP partition (type 41) of an MBR disk; that ELF is a GRUB core image with every
# module it needs built in, whose prefix (,msdos2)/boot/grub is partition 2 of the disk it came from.
build_ppc_disk() {
  local vmlinux=$1 initrd=$2 grubdir=$3 mkimage=$4 outfile=$5
  local files=$WORK/ppcboot part=$WORK/ppcpart.img raw=$WORK/ppcdisk.raw core=$WORK/core.elf
  local fat_start=$((PART_START + PREP_SECTORS))
  local fat_sectors=$(((DISK_MIB * 1024 * 1024 / 512) - fat_start))
  "$mkimage" -O powerpc-ieee1275 -d "$grubdir" -p '(,msdos2)/boot/grub' -o "$core" \
    part_msdos fat normal configfile linux gzio boot echo test ||
    die "grub-mkimage (powerpc-ieee1275) failed"
  (($(stat -c %s "$core") <= PREP_SECTORS * 512)) || die "the GRUB core image does not fit the PReP partition"

  mkdir -p "$files/boot/grub"
  gzip -9 -n -c "$vmlinux" >"$files/vmlinux.gz"
  cp "$initrd" "$files/initrd.img"
  cat >"$files/boot/grub/grub.cfg" <<EOF
# hci test guest: the pseries path (SLOF -> PReP partition -> GRUB powerpc-ieee1275)
set timeout=0
set default=0
menuentry "hci test guest" {
  linux /vmlinux.gz console=hvc0 panic=5 loglevel=4 hci.boot=of
  initrd /initrd.img
}
EOF
  find "$files" -exec touch -h -d "@$EPOCH" {} +

  rm -f "$part"
  mkfs.fat -C -F 16 -n HCIBOOT -i "$PPC_VOLID" -h "$fat_start" --invariant "$part" $((fat_sectors / 2)) >/dev/null
  export MTOOLS_SKIP_CHECK=1
  mmd -i "$part" ::/boot ::/boot/grub
  local f
  for f in vmlinux.gz initrd.img boot/grub/grub.cfg; do mcopy -m -i "$part" "$files/$f" "::/$f"; done

  rm -f "$raw"
  truncate -s "${DISK_MIB}M" "$raw"
  sfdisk --quiet "$raw" <<EOF
label: dos
label-id: $PPC_DISK_ID
unit: sectors

start=$PART_START, size=$PREP_SECTORS, type=41, bootable
start=$fat_start, size=$fat_sectors, type=6
EOF
  dd if="$core" of="$raw" bs=512 seek="$PART_START" conv=notrunc status=none
  dd if="$part" of="$raw" bs=512 seek="$fat_start" conv=notrunc status=none
  qemu-img convert -f raw -O qcow2 "$raw" "$outfile"
}

# ---------------------------------------------------------------------------------------------------

main() {
  ensure_tools
  mapfile -t pkgs < <(resolve_packages)
  [[ ${#pkgs[@]} -gt 0 && ${pkgs[-1]} != MISSING* ]] || die "cannot resolve the guest's packages: ${pkgs[*]:-none}"
  local -a hpkgs=()
  if [[ ${#HOST_PACKAGES[@]} -gt 0 ]]; then
    mapfile -t hpkgs < <(resolve_host_packages)
    [[ ${#hpkgs[@]} -gt 0 && ${hpkgs[-1]} != MISSING* ]] || die "cannot resolve the host's packages: ${hpkgs[*]:-none}"
  fi
  local -a outputs=(initrd.img)
  if [[ $ARCH == amd64 ]]; then outputs+=(vmlinuz disk.qcow2); else outputs+=(vmlinux disk-ppc64le.qcow2); fi
  local inputs o uptodate=1
  inputs=$(
    echo "format $FORMAT"
    echo "arch $ARCH"
    printf '%s\n' "${pkgs[@]}"
    if [[ ${#hpkgs[@]} -gt 0 ]]; then printf 'host %s\n' "${hpkgs[@]}"; fi
    echo "build.sh $(sha256sum <"$HERE/build.sh" | cut -d' ' -f1)"
    echo "init $(sha256sum <"$HERE/init" | cut -d' ' -f1)"
    echo "tools $(dpkg-query -W -f='${Package}=${Version} ' mtools dosfstools fdisk qemu-utils cpio 2>/dev/null)"
  )
  for o in "${outputs[@]}" inputs.txt; do [[ -f $OUT/$o ]] || uptodate=0; done
  if [[ $uptodate == 1 && $(cat "$OUT/inputs.txt") == "$inputs" ]]; then
    log "up to date: $OUT"
    return 0
  fi

  WORK=$(mktemp -d /tmp/hci-guest-build.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT

  local spec deb name
  for spec in "${pkgs[@]}"; do
    deb=$(fetch "$spec")
    name=${spec%%=*}
    mkdir -p "$WORK/pkg/$name"
    dpkg-deb -x "$deb" "$WORK/pkg/$name"
  done
  for spec in "${hpkgs[@]}"; do
    deb=$(fetch "$spec" host)
    name=${spec%%=*}
    mkdir -p "$WORK/host/$name"
    dpkg-deb -x "$deb" "$WORK/host/$name"
  done
  local kpkg=${pkgs[0]%%=*}
  local kroot=$WORK/pkg/$kpkg kver kimage
  kver=$(ls "$kroot/lib/modules")
  kimage=$kroot/boot/vmlinuz-$kver
  [[ $ARCH == amd64 ]] || kimage=$kroot/boot/vmlinux-$kver
  [[ -f $kimage ]] || die "no ${kimage#"$kroot"} in $kpkg"

  mkdir -p "$OUT"
  rm -f "$OUT/inputs.txt"
  build_initrd "$kroot" "$kver" "$WORK/pkg/busybox-static" "$WORK/initrd.img"
  if [[ $ARCH == amd64 ]]; then
    cp "$kimage" "$WORK/vmlinuz"
    build_disk "$WORK/vmlinuz" "$WORK/initrd.img" "$WORK/pkg/syslinux" "$WORK/pkg/syslinux-common" \
      "$WORK/pkg/shim-signed/usr/lib/shim/shimx64.efi.signed" \
      "$WORK/pkg/grub-efi-amd64-signed/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" "$WORK/disk.qcow2"
  else
    cp "$kimage" "$WORK/vmlinux"
    build_ppc_disk "$WORK/vmlinux" "$WORK/initrd.img" "$WORK/pkg/grub-ieee1275-bin/usr/lib/grub/powerpc-ieee1275" \
      "$WORK/host/grub-common/usr/bin/grub-mkimage" "$WORK/disk-ppc64le.qcow2"
  fi
  for o in "${outputs[@]}"; do mv -f "$WORK/$o" "$OUT/$o"; done
  echo "$inputs" >"$OUT/inputs.txt"
  local what="vmlinux, disk-ppc64le.qcow2 ($DISK_MIB MiB, SLOF -> PReP -> GRUB)"
  [[ $ARCH != amd64 ]] || what="vmlinuz, disk.qcow2 ($DISK_MIB MiB, BIOS + UEFI)"
  log "built $OUT ($ARCH): kernel $kver, $(stat -c %s "$OUT/initrd.img") byte initrd, $what"
}

main "$@"
