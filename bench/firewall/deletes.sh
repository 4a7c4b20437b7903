#!/usr/bin/env bash
# bench/firewall/deletes.sh: why removing one VM from the firewall costs more than adding one. In a
# scratch network namespace, times one nft transaction (a whole `nft -f` process, as the agent pays
# it) that adds, then one that deletes, a single object of each kind the agent's table uses: an
# element of a plain set, of a concatenated set, of an interval set, of a verdict map; a rule; a
# chain. BENCH_REPEAT (default 9) rounds; prints the median per row. Then the same element add and
# delete through one long-lived libnftables context (python3 ctypes; what the agent's session does):
# the delete's cost is the closing of nft's netlink socket, which waits for the objects the
# transaction deleted to be freed (an RCU grace period), so a socket kept open does not pay it.
# Run as root.
set -euo pipefail
[[ $EUID -eq 0 ]] || { echo "run as root (network namespaces, nft)" >&2; exit 1; }
repeat=${BENCH_REPEAT:-9}
ns="hcidel-$$"
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip netns exec "$ns" nft -f - <<'NFT'
table inet t {
  set plain { type ifname; elements = { "x1", "x2" }; }
  set concat { type ifname . ipv4_addr; elements = { "x1" . 10.0.0.1 }; }
  set ranges { type ipv4_addr; flags interval; elements = { 10.9.0.0/24 }; }
  map verdicts { type ifname : verdict; elements = { "x1" : accept }; }
  chain f { type filter hook forward priority 0; policy drop; iifname @plain accept; iifname vmap @verdicts; }
  chain g { }
}
NFT
# us TEXT: microseconds one `nft -f` of TEXT takes
us() { local s; s=$(date +%s%N); ip netns exec "$ns" nft -f - <<<"$1"; echo $((($(date +%s%N) - s) / 1000)); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A add del
for ((i = 1; i <= repeat; i++)); do
  add[plain]+="$(us "add element inet t plain { \"y$i\" }") "
  del[plain]+="$(us "delete element inet t plain { \"y$i\" }") "
  add[concat]+="$(us "add element inet t concat { \"y$i\" . 10.0.1.$i }") "
  del[concat]+="$(us "delete element inet t concat { \"y$i\" . 10.0.1.$i }") "
  add[interval]+="$(us "add element inet t ranges { 10.8.$i.0/24 }") "
  del[interval]+="$(us "delete element inet t ranges { 10.8.$i.0/24 }") "
  add[vmap]+="$(us "add element inet t verdicts { \"y$i\" : accept }") "
  del[vmap]+="$(us "delete element inet t verdicts { \"y$i\" }") "
  add[rule]+="$(us "add rule inet t g iifname \"r$i\" accept") "
  handle=$(ip netns exec "$ns" nft -a list chain inet t g | sed -n "s/.*\"r$i\" accept # handle //p")
  del[rule]+="$(us "delete rule inet t g handle $handle") "
  add[chain]+="$(us "add chain inet t c$i") "
  del[chain]+="$(us "delete chain inet t c$i") "
  add[baseline]+="$(us "list table inet t" >/dev/null; us "") "
done
echo "== bench/firewall/deletes $(date -u +%Y-%m-%dT%H:%MZ), $(nft --version), kernel $(uname -r), load $(cut -d' ' -f1 /proc/loadavg), $repeat rounds"
printf '%-10s %12s %12s\n' object "add ms" "delete ms"
for k in plain concat interval vmap rule chain; do
  a=$(tr ' ' '\n' <<<"${add[$k]}" | grep . | median)
  d=$(tr ' ' '\n' <<<"${del[$k]}" | grep . | median)
  printf '%-10s %12.1f %12.1f\n' "$k" "$(bc -l <<<"$a/1000")" "$(bc -l <<<"$d/1000")"
done
b=$(tr ' ' '\n' <<<"${add[baseline]}" | grep . | median)
printf '%-10s %12.1f %12s\n' "empty nft" "$(bc -l <<<"$b/1000")" "-"
python_session=$(cat <<'PY'
import ctypes, sys, time
lib = ctypes.CDLL("libnftables.so.1")
lib.nft_ctx_new.restype = ctypes.c_void_p
for f in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
    getattr(lib, f).argtypes = [ctypes.c_void_p]
lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
ctx = lib.nft_ctx_new(0)
lib.nft_ctx_buffer_output(ctx)
lib.nft_ctx_buffer_error(ctx)
def us(cmd):
    started = time.perf_counter()
    assert lib.nft_run_cmd_from_buffer(ctx, cmd.encode()) == 0, cmd
    return (time.perf_counter() - started) * 1e6
adds, dels = [], []
for i in range(int(sys.argv[1])):
    adds.append(us('add element inet t plain { "s%d" }' % i))
    dels.append(us('delete element inet t plain { "s%d" }' % i))
med = lambda v: sorted(v)[(len(v) - 1) // 2] / 1000
print("%-10s %12.2f %12.2f" % ("session", med(adds), med(dels)))
PY
)
echo "one libnftables context, plain set element (no process, socket kept open):"
ip netns exec "$ns" python3 -c "$python_session" "$repeat"
