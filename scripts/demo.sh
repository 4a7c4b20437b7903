#!/usr/bin/env bash
# demo.sh: the README's demo. Installs what it needs, builds hci, then starts a 3-member hci-controller
# cluster on loopback (ephemeral ports, scratch data dirs) and drives it with hcictl the way an
# operator would: two departments with quotas, zones, a zone policy, a volume and a VM; two requests
# the controller must refuse; then kill -9 of the leader, a new election, writes through a survivor,
# the killed member restarting and catching up. Then two simulated hosts join with their agents: a
# real VM is placed and boots, moves live, a host is drained for maintenance, the VM is deleted; the
# audit log closes it. Everything it started is stopped
# and its scratch directory removed on exit (HCI_DEMO_KEEP=1 keeps the directory and member logs).
# Exits non-zero if any step that should succeed fails.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

step() { echo; echo "== step: $*"; }
# show CMD...: prints the command as an operator would type it (arguments with spaces quoted).
show() {
  local a line="\$"
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then line+=" $a"; else line+=" '$a'"; fi
  done
  echo "$line"
}
# run CMD...: shows the command, then runs it (a failure ends the demo).
run() { show "$@"; "$@"; }
# refused CMD...: the command must be refused by the cluster (hcictl exit status 1).
refused() {
  show "$@"
  local rc=0
  "$@" || rc=$?
  [[ $rc -eq 1 ]] || die "expected the cluster to refuse this (exit 1), got exit $rc: $*"
  echo "(refused as it should be: hcictl exit status 1, and nothing changed)"
}

DEMO_DIR=""
DEMO_HOSTS=() # simulated hosts started (their libvirt instances go with the demo)
AGENT_DIRS=() # their agents' data directories
cleanup() {
  local rc=$? h
  stop_all TERM
  for h in "${DEMO_HOSTS[@]}"; do ./scripts/libvirt/host.sh down "$h" --purge >/dev/null 2>&1 || true; done
  for h in "${AGENT_DIRS[@]}"; do rm -rf "$h"; done
  if [[ $rc -eq 130 || $rc -eq 143 ]]; then
    echo "demo interrupted" >&2
  elif [[ $rc -ne 0 && -n $DEMO_DIR ]]; then
    echo >&2
    echo "demo FAILED (exit $rc). Last lines of each member's log:" >&2
    local f
    for f in "$DEMO_DIR"/member-*.log "$DEMO_DIR"/agent-*.log; do
      [[ -e $f ]] || continue
      echo "--- $f" >&2
      tail -n 20 "$f" >&2
    done
  fi
  if [[ -n $DEMO_DIR ]]; then
    if [[ ${HCI_DEMO_KEEP:-0} == 1 ]]; then echo "kept $DEMO_DIR"; else rm -rf "$DEMO_DIR"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "install dependencies and build (cargo build --workspace --bins)"
./scripts/install-deps.sh
cargo build --workspace --bins
BIN="$(cargo_target_dir)/debug"
CONTROLLER="$BIN/hci-controller"
hcictl() { "$BIN/hcictl" "$@"; }
[[ -x $CONTROLLER && -x $BIN/hcictl ]] || die "build did not produce $CONTROLLER and $BIN/hcictl"

DEMO_DIR=$(mktemp -d -t hci-demo.XXXXXX)
read -r P1 P2 P3 < <(free_ports 3)
[[ -n ${P3:-} ]] || die "could not pick free ports (python3 missing?)"
declare -A PORT=([1]=$P1 [2]=$P2 [3]=$P3)
url() { echo "http://127.0.0.1:${PORT[$1]}"; }
start() { start_member "$CONTROLLER" "$1" "${PORT[$1]}" "$DEMO_DIR/d$1" "$DEMO_DIR/member-$1.log" --site primary "${@:2}"; }

step "start member 1 with --bootstrap on 127.0.0.1:$P1 (data dir $DEMO_DIR/d1)"
start 1 --bootstrap
wait_until 10 "$DEMO_DIR/d1/admin.token" test -s "$DEMO_DIR/d1/admin.token"
TOKEN=$(cat "$DEMO_DIR/d1/admin.token")
wait_until 30 "member 1 to lead its one-member cluster" leader_is "$P1" "$TOKEN" 1
echo "member 1 is up and leads; the administrator token is in $DEMO_DIR/d1/admin.token (mode $(stat -c %a "$DEMO_DIR/d1/admin.token"))"

export HCI_URL HCI_TOKEN="$TOKEN"
HCI_URL="$(url 1),$(url 2),$(url 3)"
echo "\$ export HCI_URL=$HCI_URL HCI_TOKEN=\$(cat $DEMO_DIR/d1/admin.token)"

step "start members 2 and 3 on empty data dirs (they wait to be added), then add them"
start 2
start 3
run hcictl cluster members add --id 2 --addr "127.0.0.1:$P2"
run hcictl cluster members add --id 3 --addr "127.0.0.1:$P3"
wait_until 60 "members 2 and 3 to catch up and become voters" voters_are "$P1" "$TOKEN" 3

step "cluster status"
run hcictl cluster status

step "two departments, each with a quota"
run hcictl tenant create finance --description "Finance department" --vcpus 64 --memory-mib 262144 --disk-gib 4096
run hcictl tenant create health --description "Public health office" --vcpus 32 --memory-mib 131072 --disk-gib 2048
run hcictl tenant list

step "security zones: one network per department, plus a DMZ for finance"
run hcictl zone create finance-intranet --tenant finance --cidr 10.10.0.0/24
run hcictl zone create finance-dmz --tenant finance --cidr 10.10.1.0/24
run hcictl zone create health-records --tenant health --cidr 10.20.0.0/24
run hcictl zone list

step "a zone policy: the finance DMZ may reach the intranet on HTTPS only"
run hcictl zone-policy create --name dmz-to-intranet-https --from finance-dmz --to finance-intranet --protocol tcp --ports 443
run hcictl zone-policy list

step "a volume and a VM attached to it, with a NIC in finance-intranet"
run hcictl volume create finance-db-disk --tenant finance --size-gib 50
run hcictl vm create finance-db --tenant finance --vcpus 4 --memory-mib 8192 --volume finance-db-disk --nic finance-intranet
run hcictl volume list
run hcictl vm show finance-db --tenant finance
echo "(no hosts yet: placement and running VMs arrive with the agent; the controller already gave the NIC its MAC and IP)"

step "bad requests are refused with a clear message, and change nothing"
refused hcictl zone create finance-lab --tenant finance --cidr 10.10.0.128/25
refused hcictl vm create health-big --tenant health --vcpus 64 --memory-mib 8192

step "kill -9 the leader"
LEADER=$(hcictl cluster status -o json | jq -er .leader_id)
echo "the leader is member $LEADER (pid ${HCI_MEMBER_PID[$LEADER]}); sending SIGKILL"
kill -KILL "${HCI_MEMBER_PID[$LEADER]}"
wait "${HCI_MEMBER_PID[$LEADER]}" 2>/dev/null || true
SURVIVORS=()
for id in 1 2 3; do [[ $id == "$LEADER" ]] || SURVIVORS+=("$id"); done
SURVIVOR=${SURVIVORS[0]}
t0=$(date +%s%N)
wait_until 30 "a new leader among members ${SURVIVORS[*]}" has_leader_other_than "${PORT[$SURVIVOR]}" "$TOKEN" "$LEADER"
echo "new leader: member $(cluster_json "${PORT[$SURVIVOR]}" "$TOKEN" | jq -r .leader_id), seen $((($(date +%s%N) - t0) / 1000000)) ms after the kill"

step "the cluster still answers, and accepts writes through a surviving member"
run hcictl cluster status
run hcictl tenant list
HCI_URL=$(url "$SURVIVOR") run hcictl tenant create education --description "Schools office" --vcpus 16 --memory-mib 65536 --disk-gib 1024

step "restart member $LEADER on its data dir; it catches up with what it missed"
start "$LEADER"
# A member's own copy, without a leader round-trip: --stale against that member alone.
has_education() { hcictl --stale --url "$(url "$LEADER")" -o json tenant list | jq -e '(.items? // .) | any(.name == "education")'; }
wait_until 60 "member $LEADER to hold the tenant created while it was down" has_education
echo "member $LEADER's own copy of the tenants:"
run hcictl --stale --url "$(url "$LEADER")" tenant list
wait_until 60 "all three members to be voters again" voters_are "${PORT[$SURVIVOR]}" "$TOKEN" 3
run hcictl cluster status

# ---------------------------------------------------------------------------------------------------
# Part 2: hosts. Two simulated hosts (each its own libvirt instance) run hci-agent, join the cluster
# with single-use join tokens and take what placement gives them: a real VM boots on a host under the
# 80 % cap, moves live to the other host, and leaves a host drained for maintenance.

step "two hosts: libvirt for 'demo-h1' and 'demo-h2', hci-agent on each, joined with join tokens"
./scripts/libvirt/up.sh >/dev/null
./scripts/guest/build.sh /var/cache/hci-test-guest >/dev/null
read -r PA1 PA2 < <(free_ports 2)
start_agent() { # start_agent HOST PORT: the host's libvirt instance and its agent, joined to the cluster
  local host=$1 port=$2 uri dir
  DEMO_HOSTS+=("$host")
  uri=$(./scripts/libvirt/host.sh up "$host" | tail -n 1)
  dir=$(mktemp -d -p /var/tmp "hci-demo-$host.XXXXXX")
  AGENT_DIRS+=("$dir")
  chmod 755 "$dir" # libvirt's QEMU user must reach the pool and image files
  show hcictl host join-token create
  hcictl -o json host join-token create | jq -r .token >"$dir/join.token"
  NO_COLOR=1 "$BIN/hci-agent" --host-id "$host" --libvirt-uri "$uri" --data-dir "$dir/data" \
    --listen "127.0.0.1:$port" --reconcile-interval 2 --migration-address 127.0.0.1 \
    --controller "$HCI_URL" --token-file "$dir/join.token" >>"$DEMO_DIR/agent-$host.log" 2>&1 &
  HCI_PIDS+=("$!")
  wait_until 30 "the agent of $host to answer" healthz_ok "$port"
}
start_agent demo-h1 "$PA1"
start_agent demo-h2 "$PA2"
declare -A AGENT=([demo-h1]="http://127.0.0.1:$PA1" [demo-h2]="http://127.0.0.1:$PA2")
host_ready() { [[ $(hcictl -o json host show "$1" | jq -r 'select(.heartbeat != null) | .state') == ready ]]; }
wait_until 60 "demo-h1 to be ready" host_ready demo-h1
wait_until 60 "demo-h2 to be ready" host_ready demo-h2
run hcictl host list

step "a VM booting from a verified copy of the guest image: placed on a host, running there"
IMAGE=/var/cache/hci-test-guest/disk.qcow2
run hcictl volume create web-boot --tenant finance --size-gib 1 --source-url "file://$IMAGE" \
  --source-sha256 "$(sha256sum "$IMAGE" | cut -d' ' -f1)"
run hcictl vm create web --tenant finance --vcpus 1 --memory-mib 256 --volume web-boot
vm_json() { hcictl -o json vm show web --tenant finance; }
WEB=$(vm_json | jq -r .id)
on_host() { vm_json | jq -r .host; }
actual_is() { [[ $(vm_json | jq -r '.status.actual') == "$1" && $(vm_json | jq -r '.migration') == null ]]; }
console_has() { curl -fsS "${AGENT[$1]}/agent/v1/vms/$WEB/console" | grep -q "$2"; }
FIRST=$(on_host)
wait_until 180 "the guest to boot on $FIRST" console_has "$FIRST" HCI-GUEST-READY
wait_until 30 "the controller to see it running" actual_is running
run hcictl vm show web --tenant finance
echo "the guest's serial console on $FIRST:"
curl -fsS "${AGENT[$FIRST]}/agent/v1/vms/$WEB/console" | grep '^HCI-' | tail -n 4 | sed 's/^/  /'

step "live migration: hcictl vm migrate (the planner picks the host; the disk is copied while the guest runs)"
wait_until 30 "a heartbeat on $FIRST" console_has "$FIRST" HCI-GUEST-ALIVE
started=$SECONDS
run hcictl vm migrate web --tenant finance
SECOND=$(on_host)
moved_to() { [[ $(on_host) == "$1" ]] && actual_is running; }
wait_until 180 "the move to $SECOND to finish" moved_to "$SECOND"
echo "moved from $FIRST to $SECOND in about $((SECONDS - started)) s"
wait_until 30 "the guest's heartbeat on $SECOND" console_has "$SECOND" HCI-GUEST-ALIVE
echo "the guest's console on $SECOND: no new boot, its uptime goes on:"
curl -fsS "${AGENT[$SECOND]}/agent/v1/vms/$WEB/console" | grep '^HCI-' | tail -n 2 | sed 's/^/  /'

step "maintenance: drain $SECOND (everything on it moves within the cap), then return it to service"
run hcictl host maintenance "$SECOND"
drained() { [[ $(hcictl -o json host show "$1" | jq '.allocation.vms + .allocation.leaving') == 0 ]]; }
wait_until 180 "$SECOND to be empty" drained "$SECOND"
wait_until 60 "web to run on $FIRST" moved_to "$FIRST"
run hcictl host list
run hcictl host maintenance "$SECOND" --off
echo "(nothing moves back: web stays on $(on_host))"

step "a VM larger than the 80 % cap of any host is refused, naming the constraint"
MEM=$(hcictl -o json host show demo-h1 | jq .inventory.memory_mib)
refused hcictl vm create huge --tenant finance --vcpus 1 --memory-mib "$MEM"

step "delete the VM: its domain and volume go from its host"
run hcictl vm delete web --tenant finance
gone() { ! virsh -c "$(./scripts/libvirt/host.sh uri "$1")" list --all --name | grep -q "$WEB"; }
wait_until 60 "the domain to go from $FIRST" gone "$FIRST"
run hcictl vm list

step "the audit log (last records)"
hcictl audit | tail -n 15

step "shut down: SIGTERM to every agent and member"
stop_all TERM

echo
echo "demo finished: 3-member cluster, 3 tenants, 3 zones, 1 policy, 2 refusals, 1 leader killed and replaced;"
echo "then 2 hosts joined: a real VM placed and booted, moved live, a host drained and returned, the VM deleted."
