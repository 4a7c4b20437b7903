#!/usr/bin/env bash
# install-deps.sh: installs the Debian 12 packages that building, testing, the demo and the
# benchmarks need (RocksDB and clang for the build, jq/curl for the scripts, promtool, etcd and wrk for
# the benchmark, cpio, kmod and e2fsprogs for the LVM-thin tests' VM, nftables, socat and ping for the
# agent's firewall and its packet tests), and checks that the Rust toolchain is there. Run as root. Idempotent: when every package is already installed it only checks
# and returns within a second. It never leaves a daemon running: service starts by package scripts are
# blocked with policy-rc.d while apt runs.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config librocksdb-dev libclang-dev clang # build (rocksdb-sys links the system lib)
  curl jq ca-certificates procps iproute2 python3             # demo and scripts (python3: free ports)
  prometheus                                                  # promtool, to check /metrics
  lvm2 thin-provisioning-tools                                # the agent's LVM-thin volume backend
  nftables socat iputils-ping                                 # the agent's firewall and its packet tests
  cpio kmod e2fsprogs                                         # scripts/lvm-vm (its QEMU: libvirt/up.sh)
  etcd-server etcd-client wrk                                 # bench/raft-writes
)
MIN_RUST="1.80" # the workspace's rust-version

export PATH="${HOME:-/root}/.cargo/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive

log() { echo "install-deps: $*"; }
die() { echo "install-deps: error: $*" >&2; exit 1; }

missing_packages() {
  # dpkg-query prints a line per package it knows; unknown ones only go to stderr.
  local installed
  installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null |
    awk '$2 == "installed" { print $1 }' || true)
  local p
  for p in "${PACKAGES[@]}"; do
    grep -qx -- "$p" <<<"$installed" || echo "$p"
  done
}

apt_lists_fresh() {
  # Fresh = some package list downloaded within the last day.
  # (No `| grep -q` under pipefail: an early exit of grep would fail the pipeline with SIGPIPE.)
  [[ -n $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null) ]]
}

has_candidate() {
  [[ $(apt-cache policy "$1" 2>/dev/null) =~ Candidate:\ [^\(] ]]
}

install_packages() {
  local -a missing=("$@")
  [[ $EUID -eq 0 ]] || die "packages missing (${missing[*]}) and not running as root; run as root on Debian 12"

  local need_update=0 p
  apt_lists_fresh || need_update=1
  for p in "${missing[@]}"; do has_candidate "$p" || need_update=1; done
  if [[ $need_update -eq 1 ]]; then
    log "apt-get update"
    apt-get update -q
  fi

  # Block service starts from maintainer scripts (etcd-server, prometheus ship init scripts); a
  # policy-rc.d already in place is kept aside and put back afterwards.
  local policy=/usr/sbin/policy-rc.d saved=""
  if [[ -e $policy ]]; then
    saved=$(mktemp)
    cp -p "$policy" "$saved"
  fi
  # shellcheck disable=SC2064 # expand now: restore exactly this state on any exit
  trap "if [[ -n '$saved' ]]; then mv -f '$saved' '$policy'; else rm -f '$policy'; fi" EXIT
  printf '#!/bin/sh\n# written by hci scripts/install-deps.sh while apt runs\nexit 101\n' >"$policy"
  chmod 755 "$policy"

  local before
  before=$(pgrep -x etcd || true)
  log "apt-get install ${missing[*]}"
  apt-get install -y -q --no-install-recommends "${missing[@]}"

  # Belt and braces: stop any etcd that the install started despite policy-rc.d (only new pids).
  local pid
  for pid in $(pgrep -x etcd || true); do
    if ! grep -qx -- "$pid" <<<"$before"; then
      log "stopping etcd (pid $pid) started by the package install"
      kill "$pid" 2>/dev/null || true
    fi
  done

  if [[ -n $saved ]]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
  trap - EXIT
}

check_rust() {
  command -v cargo >/dev/null 2>&1 ||
    die "cargo not found (looked in PATH and ~/.cargo/bin). The Rust toolchain (>= $MIN_RUST, via rustup) is expected to be preinstalled on this machine; this script cannot download it, and Debian 12's own cargo is too old for this workspace."
  local v
  v=$(rustc --version 2>/dev/null | awk '{print $2}')
  if [[ -n $v ]] && [[ $(printf '%s\n%s\n' "$MIN_RUST" "$v" | sort -V | head -n1) != "$MIN_RUST" ]]; then
    die "rustc $v is older than the workspace's rust-version $MIN_RUST"
  fi
}

main() {
  mapfile -t missing < <(missing_packages)
  if [[ ${#missing[@]} -gt 0 ]]; then
    install_packages "${missing[@]}"
    mapfile -t missing < <(missing_packages)
    [[ ${#missing[@]} -eq 0 ]] || die "still missing after apt-get install: ${missing[*]}"
  fi
  check_rust
  log "ok: all ${#PACKAGES[@]} packages installed; $(cargo --version)"
}

main "$@"
