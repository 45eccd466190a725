#!/usr/bin/env bash
# Work per acquire+release pair, which host noise changes less than
# throughput: starts a single-node server from BUILD_DIR (data in a temp dir),
# runs one peer_bench row against it and prints pairs/s, p50/p99 and, per
# pair, the server's and the load generator's CPU time, context switches and
# (with perf installed) system calls.
#
#   bench/peers/pair_cost.sh BUILD_DIR WORKLOAD CLIENTS [SECONDS]
#   e.g. bench/peers/pair_cost.sh build-rel w1 32 2
#        SERVER_ARGS="--election-timeout-ms 300" bench/peers/pair_cost.sh build-rel w2 8
#        PEER=redis bench/peers/pair_cost.sh build-rel w1 32 2   # or PEER=redis-aof
#        PIN="0 1" bench/peers/pair_cost.sh build-rel w1 32     # run.sh's pinned layout
#
# PIN="S G" pins the server to CPU S and the generator to CPU G (taskset).
#
# Server CPU comes from /proc/PID/stat, its context switches from the sum
# over /proc/PID/task/*/status; the generator's from /usr/bin/time. System
# calls: `perf stat -e raw_syscalls:sys_enter` on both (-1 without perf).
# Latchkey rows add the server's log appends per pair and their mean time
# from hand-over to the disk to completion (`latchkey status --json`).
set -euo pipefail
B=$1; W=$2; C=$3; S=${4:-3}
ONE_SERVER_TAG=pair-cost
# shellcheck source=bench/peers/one_server.sh
source "$(dirname "$0")/one_server.sh"
cs() { local t=0 f; for f in /proc/"$1"/task/*/status; do
  t=$((t + $(awk '/ctxt_switches/{s+=$2} END{print s}' "$f"))); done; echo $t; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
count=()
if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter -o /dev/null true 2>/dev/null; then
  perf stat -x, -e raw_syscalls:sys_enter -p "$SP" -o "$D/server.perf" &
  PERF=$!
  count=(perf stat -x "," -e raw_syscalls:sys_enter -o "$D/generator.perf" --)
fi
# Latchkey: the server's log appends and their summed time (latchkey status --json).
appends() { [[ $SYSTEM == latchkey ]] || { echo "0 0"; return; }
  "$B/src/cli/latchkey" status --json -e "$EP" |
    python3 -c 'import json, sys; s = json.load(sys.stdin); print(s["log_appends"], s["log_append_micros"])'; }
a0=$(appends)
c0=$(cpu $SP); s0=$(cs $SP)
gen_pin=()
if [[ -n ${PIN:-} ]]; then
  read -r server_cpu gen_cpu <<<"$PIN"
  taskset -a -p -c "$server_cpu" "$SP" >/dev/null
  gen_pin=(taskset -c "$gen_cpu")
fi
/usr/bin/time -f "%U %S %w %c" -o "$D/time" "${count[@]}" "${gen_pin[@]}" "$B/bench/peers/peer_bench" \
  --system "$SYSTEM" --endpoint "$EP" --workload "$W" --clients "$C" --seconds "$S" \
  --jsonl "$D/r.jsonl" >/dev/null
c1=$(cpu $SP); s1=$(cs $SP)
a1=$(appends)
if [[ ${#count[@]} -gt 0 ]]; then kill -INT "$PERF"; wait "$PERF" || true; fi
# shellcheck disable=SC2086 # a0 and a1 are "COUNT MICROS" pairs, two arguments each
python3 - "$D/r.jsonl" "$D/time" "$c0" "$c1" "$s0" "$s1" "$(getconf CLK_TCK)" "$D" $a0 $a1 <<'PY'
import json, os, sys
row = [json.loads(l) for l in open(sys.argv[1])][-1]
bu, bs, bw, bc = (float(x) for x in open(sys.argv[2]).read().split()[:4])
c0, c1, s0, s1, tck = (float(x) for x in sys.argv[3:8])
ops = row["ops"] or 1
def syscalls(name):
    path = os.path.join(sys.argv[8], name + ".perf")
    if not os.path.exists(path):
        return -1
    for line in open(path):
        if "raw_syscalls:sys_enter" in line:
            return float(line.split(",")[0]) / ops
    return -1
n0, t0, n1, t1 = (float(x) for x in sys.argv[9:13])
appends = ''
if n1 > n0:
    appends = f' | log appends/pair={(n1 - n0) / ops:.2f} mean append={(t1 - t0) / (n1 - n0):.0f}us'
print(f'{row["system"]} {row["workload"]} C={row["clients"]} pairs/s={row["ops_per_s"]:.0f} '
      f'p50={row["p50_us"]:.0f}us p99={row["p99_us"]:.0f}us | '
      f'server cpu/pair={(c1 - c0) / tck * 1e6 / ops:.1f}us cs/pair={(s1 - s0) / ops:.2f} '
      f'syscalls/pair={syscalls("server"):.2f} | '
      f'generator cpu/pair={(bu + bs) * 1e6 / ops:.1f}us cs/pair={(bw + bc) / ops:.2f} '
      f'syscalls/pair={syscalls("generator"):.2f}' + appends)
PY
