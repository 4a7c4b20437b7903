#!/usr/bin/env bash
# test.sh: the README's test command, and what CI runs. Installs what the build and tests need
# (scripts/install-deps.sh), builds every binary of the workspace (the integration tests start the
# real hci-controller and hcictl), then runs every test of the workspace with its output on the
# console. Prints how long the build and the tests took. The exit status is the tests' own.
# On a host whose kernel has no device-mapper, the LVM-thin tests run in a small QEMU VM instead
# (scripts/lvm-vm/run.sh, after the workspace's tests), as does the VLAN zone test on a kernel
# without 802.1Q; their failure fails this script too.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${HOME:-/root}/.cargo/bin:$PATH"

./scripts/install-deps.sh
# libvirt, QEMU, OVMF, swtpm (and libvirt-dev for the agent's build); the agent's tests start one
# libvirt instance per simulated host themselves (scripts/libvirt/host.sh).
./scripts/libvirt/up.sh
# The LVM-thin backend's tests need device-mapper (dm-thin) in the kernel; some virtual machines (this
# project's reference machine among them) have none. There the host's run skips them (HCI_SKIP_LVM=1)
# and they run in a QEMU VM whose kernel has it (scripts/lvm-vm/run.sh), after the workspace's tests.
# HCI_SKIP_LVM=1 set by the caller skips them everywhere.
lvm_tests=native
if [[ ${HCI_SKIP_LVM:-} == 1 ]]; then
  lvm_tests=skipped
  echo "== NOTE: HCI_SKIP_LVM=1: the LVM-thin volume tests are SKIPPED"
elif ! grep -qw device-mapper /proc/devices && ! modprobe dm-thin-pool 2>/dev/null; then
  lvm_tests=vm
  echo "== NOTE: this kernel has no device-mapper: the LVM-thin volume tests run in a QEMU VM (scripts/lvm-vm/run.sh), not on the host"
  export HCI_SKIP_LVM=1
fi

# The VLAN zone test (agent/tests/network_netns.rs) needs 802.1Q VLAN devices; where the kernel has
# none it runs in the same VM, after the workspace's tests (HCI_SKIP_VLAN=1 skips it on the host).
# HCI_SKIP_VLAN=1 set by the caller skips it everywhere.
vlan_tests=native
if [[ ${HCI_SKIP_VLAN:-} == 1 ]]; then
  vlan_tests=skipped
  echo "== NOTE: HCI_SKIP_VLAN=1: the VLAN zone test is SKIPPED"
elif [[ ! -d /proc/net/vlan ]] && ! modprobe 8021q 2>/dev/null; then
  vlan_tests=vm
  echo "== NOTE: this kernel has no 802.1Q VLANs: the VLAN zone test runs in a QEMU VM (scripts/lvm-vm/run.sh), not on the host"
  export HCI_SKIP_VLAN=1
fi

locked=()
[[ -f Cargo.lock ]] && locked=(--locked)

t0=$SECONDS
echo "== build: cargo build --workspace --bins ${locked[*]}"
cargo build --workspace --bins "${locked[@]}"
build_s=$((SECONDS - t0))
echo "== build took ${build_s} s"

t0=$SECONDS
echo "== test: cargo test --workspace --no-fail-fast ${locked[*]}"
rc=0
cargo test --workspace --no-fail-fast "${locked[@]}" || rc=$?
test_s=$((SECONDS - t0))

# vm_test TARGET [FILTER]: runs the hci-agent test binary TARGET (only tests matching FILTER) in the
# VM (scripts/lvm-vm/run.sh); its exit status.
vm_test() {
  local target=$1 bin
  shift
  # Built already by the run above; the second call, with JSON output, only names the executable.
  cargo test -p hci-agent --test "$target" --no-run "${locked[@]}" || return 1
  bin=$(cargo test -p hci-agent --test "$target" --no-run "${locked[@]}" --message-format=json 2>/dev/null |
    jq -r --arg t "$target" 'select(.reason == "compiler-artifact" and .target.name == $t) | .executable // empty' |
    tail -n 1) || true
  [[ -n $bin ]] || { echo "== error: building the $target test binary failed"; return 1; }
  ./scripts/lvm-vm/run.sh "$bin" "$@"
}

vm_rc=0
lvm_note="the LVM-thin tests ran natively, in cargo test"
if [[ $lvm_tests == skipped ]]; then
  lvm_note="the LVM-thin tests were SKIPPED (HCI_SKIP_LVM=1)"
elif [[ $lvm_tests == vm ]]; then
  t0=$SECONDS
  echo "== test: the LVM-thin tests in a VM (scripts/lvm-vm/run.sh)"
  lvm_rc=0
  vm_test volumes_lvm_thin || lvm_rc=$?
  lvm_note="the LVM-thin tests ran in a VM: exit status ${lvm_rc}, $((SECONDS - t0)) s"
  [[ $lvm_rc -eq 0 ]] || vm_rc=$lvm_rc
fi
vlan_note="the VLAN zone test ran natively, in cargo test"
if [[ $vlan_tests == skipped ]]; then
  vlan_note="the VLAN zone test was SKIPPED (HCI_SKIP_VLAN=1)"
elif [[ $vlan_tests == vm ]]; then
  t0=$SECONDS
  echo "== test: the VLAN zone test in a VM (scripts/lvm-vm/run.sh)"
  vlan_rc=0
  vm_test network_netns vlans || vlan_rc=$?
  vlan_note="the VLAN zone test ran in a VM: exit status ${vlan_rc}, $((SECONDS - t0)) s"
  [[ $vlan_rc -eq 0 ]] || vm_rc=$vlan_rc
fi

echo "== build took ${build_s} s, tests took ${test_s} s; cargo test exit status ${rc}; ${lvm_note}; ${vlan_note}"
[[ $rc -ne 0 ]] || rc=$vm_rc
exit "$rc"
