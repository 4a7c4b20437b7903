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
# Tests that need a kernel feature some hosts lack (this project's reference machine among them)
# run in a QEMU VM whose kernel has it (scripts/lvm-vm/run.sh), after the workspace's tests; the
# host's run skips them through their skip variable. That variable set to 1 by the caller skips
# them everywhere. Each suite: a name, its skip variable, the hci-agent test target (and filter).
#   - the LVM-thin backend's tests need device-mapper with dm-thin;
#   - the VLAN zone test (agent/tests/network_netns.rs) needs 802.1Q VLAN devices.
declare -A where # skip variable -> native | skipped | vm
# decide SKIP_VAR WHAT MISSING CHECK...: where the suite runs; CHECK succeeds when the kernel has it.
decide() {
  local var=$1 what=$2 missing=$3
  shift 3
  if [[ ${!var:-} == 1 ]]; then
    where[$var]=skipped
    echo "== NOTE: $var=1: $what: SKIPPED"
  elif ! "$@"; then
    where[$var]=vm
    echo "== NOTE: this kernel has no $missing: $what: in a QEMU VM (scripts/lvm-vm/run.sh), not on the host"
    export "$var=1"
  else
    where[$var]=native
  fi
}
# shellcheck disable=SC2317 # called through decide
has_dm_thin() { grep -qw device-mapper /proc/devices || modprobe dm-thin-pool 2>/dev/null; }
# shellcheck disable=SC2317 # called through decide
has_vlans() { [[ -d /proc/net/vlan ]] || modprobe 8021q 2>/dev/null; }
decide HCI_SKIP_LVM "the LVM-thin volume tests" device-mapper has_dm_thin
decide HCI_SKIP_VLAN "the VLAN zone test" "802.1Q VLANs" has_vlans

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
  local out rc=0
  out=$(mktemp)
  ./scripts/lvm-vm/run.sh "$bin" "$@" | tee "$out" || rc=$?
  # A filter that matches nothing, or a test that skipped itself, must not pass as a run.
  if [[ $rc -eq 0 ]] && { ! grep -q '^test result: ok\. [1-9]' "$out" || grep -q 'SKIPPED' "$out"; }; then
    echo "== error: $target ran no test in the VM"
    rc=1
  fi
  rm -f "$out"
  return "$rc"
}

vm_rc=0 notes=()
# suite SKIP_VAR WHAT TARGET [FILTER]: runs the suite in the VM if decided so; notes how it ran.
suite() {
  local var=$1 what=$2 rc=0 t0=$SECONDS
  shift 2
  case ${where[$var]} in
    native) notes+=("$what ran natively, in cargo test") ;;
    skipped) notes+=("$what SKIPPED ($var=1)") ;;
    vm)
      echo "== test: $what in a VM (scripts/lvm-vm/run.sh)"
      vm_test "$@" || rc=$?
      notes+=("$what ran in a VM: exit status ${rc}, $((SECONDS - t0)) s")
      [[ $rc -eq 0 ]] || vm_rc=$rc
      ;;
  esac
}
suite HCI_SKIP_LVM "the LVM-thin tests" volumes_lvm_thin
suite HCI_SKIP_VLAN "the VLAN zone test" network_netns vlans

echo "== build took ${build_s} s, tests took ${test_s} s; cargo test exit status ${rc}; $(printf '%s; ' "${notes[@]}" | sed 's/; $//')"
[[ $rc -ne 0 ]] || rc=$vm_rc
exit "$rc"
