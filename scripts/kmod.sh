# shellcheck shell=bash
# kmod.sh: sourced by the scripts that build small initramfs images from a Debian kernel package
# (scripts/guest/build.sh, scripts/lvm-vm/build.sh): which module files a list of modules needs, in
# the order to load them.

# copy_modules KROOT KVER ROOT LIST WORK MODULE...: copies into ROOT/lib/modules/KVER the .ko files
# of each MODULE and of what it depends on (modprobe --show-depends on a depmod of the unpacked tree
# KROOT, soft dependencies included; first occurrence wins) and writes their paths, relative to the
# modules directory, to the file LIST in load order. Modules built into the kernel are skipped. WORK
# is a scratch directory. Fails (through die) on a module that is neither built in nor a module.
copy_modules() {
  local kroot=$1 kver=$2 root=$3 list=$4 work=$5 m line ko
  shift 5
  depmod -b "$kroot" "$kver"
  : >"$list"
  for m in "$@"; do
    if grep -Eq "/${m//_/[_-]}\.ko$" "$kroot/lib/modules/$kver/modules.builtin"; then continue; fi
    modprobe -d "$kroot" -S "$kver" --show-depends "$m" >"$work/deps" 2>/dev/null ||
      die "module $m is neither built in nor a module of $kver"
    while read -r line; do
      case $line in builtin*) continue ;; esac
      ko=${line#insmod }
      ko=${ko%% *}
      ko=${ko#"$kroot/lib/modules/$kver/"}
      grep -qxF "$ko" "$list" && continue
      echo "$ko" >>"$list"
      mkdir -p "$root/lib/modules/$kver/$(dirname "$ko")"
      cp "$kroot/lib/modules/$kver/$ko" "$root/lib/modules/$kver/$ko"
    done <"$work/deps"
  done
}
