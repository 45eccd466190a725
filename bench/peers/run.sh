#!/usr/bin/env bash
# Latchkey vs etcd, ZooKeeper and Redis on this machine, in one run.
#
#   bench/peers/run.sh [--quick] [--out DIR] [--no-install] [--no-pin] [--server-cpu N]
#                      [--only "redis etcd ..."] [--rounds N]
#
# Installs the peers (Debian packages), builds `latchkey` and `peer_bench`
# (RelWithDebInfo, in build-rel/), then for each system in turn: starts it on
# 127.0.0.1 (free ports, data in a temp dir), polls until one lock works,
# runs W1/W2, stops it, runs W3 on a fresh instance (W4: 3-node Latchkey and
# 3-node etcd, W1 only) and stops it.
# Only one system runs at a time. Servers are pinned to CPU 0 and the load
# generator to CPU 1 (taskset) when the machine has 2+ CPUs; --server-cpu 1
# swaps them (on the benchmark VM CPU 1 takes the disk's interrupts, which
# favours the servers that sync: docs/benchmarks/sessions-10-11.md, session 10).
# --rounds N runs every system N times, in rounds (round r starts at the
# r-th system of the list, so no system always runs first or last); the
# tables then give per-row medians, and each ratio is the median of the
# per-round ratios with their range: one run on this VM swings with the
# disk's minute (docs/benchmarks.md).
# Results: DIR/results.jsonl (raw, each row with its "round"), DIR/results.md
# (tables), DIR/peers.png.
# Everything started here is stopped by PID on exit (trap).
#
# Smoke tests: PEER_BENCH_SECONDS=0.5 PEER_BENCH_W3_LOCKS=300 PEER_BENCH_W3_SETTLE=0
# shorten every row.
# Systems (--only): redis redis-aof zookeeper etcd latchkey latchkey3 etcd3,
# and latchkey-ram (not in the default list): a single node with its Raft log
# on tmpfs (/dev/shm), W1 and W2 only. A diagnostic, not a configuration:
# nothing it acknowledges survives a crash. Its rows show what the disk's
# write costs Latchkey (docs/benchmarks.md, "What the disk costs").
set -euo pipefail
ARGS="$*"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$ROOT/build-rel
QUICK=0
INSTALL=1
PIN=1
SERVER_CPU=0
ONLY="redis redis-aof zookeeper etcd latchkey latchkey3 etcd3"
OUT=""
ROUNDS=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=1 ;;
    --no-install) INSTALL=0 ;;
    --no-pin) PIN=0 ;;
    --server-cpu) SERVER_CPU=$2; shift ;;
    --out) OUT=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    *)
      echo "usage: $0 [--quick] [--out DIR] [--no-install] [--no-pin] [--server-cpu 0|1]" \
        "[--only \"SYSTEMS\"] [--rounds N]" >&2
      exit 64
      ;;
  esac
  shift
done
if ! [[ $ROUNDS =~ ^[1-9][0-9]*$ ]]; then
  echo "--rounds must be a positive number" >&2
  exit 64
fi
if [[ $SERVER_CPU != 0 && $SERVER_CPU != 1 ]]; then
  echo "--server-cpu must be 0 or 1 (the generator gets the other one)" >&2
  exit 64
fi
OUT=${OUT:-$BUILD/peers-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [[ $QUICK == 1 ]]; then SECONDS_PER_ROW=2; else SECONDS_PER_ROW=10; fi
SECONDS_PER_ROW=${PEER_BENCH_SECONDS:-$SECONDS_PER_ROW}  # smoke tests
W3_LOCKS=${PEER_BENCH_W3_LOCKS:-10000}
W3_SETTLE=${PEER_BENCH_W3_SETTLE:-3}  # W3: also the lowest RSS this long after, locks held

PKGS="etcd-server zookeeper redis-server libhiredis-dev libzookeeper-mt-dev libgrpc++-dev
      protobuf-compiler-grpc gnuplot-nox"
if [[ $INSTALL == 1 ]]; then
  missing=$(for p in $PKGS; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done)
  if [[ -n $missing ]]; then
    echo "installing: $missing"
    # policy-rc.d (in containers) or systemd may start the packaged services;
    # this script never uses them, it starts its own instances.
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
  fi
fi

cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" --parallel "$(nproc)" --target latchkey peer_bench
LATCHKEY=$BUILD/src/cli/latchkey
PEER_BENCH=$BUILD/bench/peers/peer_bench

if [[ $PIN == 1 && $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
  GEN_CPU=$((1 - SERVER_CPU))
  SERVER_PIN=(taskset -c "$SERVER_CPU")
  GEN_PIN=(taskset -c "$GEN_CPU")
  PINNING="servers on CPU $SERVER_CPU, load generator on CPU $GEN_CPU (taskset)"
else
  SERVER_PIN=()
  GEN_PIN=()
  PINNING="not pinned"
fi

TMP=$(mktemp -d /tmp/peer-bench.XXXXXX)
RAM_TMP=""  # latchkey-ram's data dir on tmpfs, made when that system runs
PIDS=()
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
cleanup() {
  stop_all
  rm -rf "$TMP"
  if [[ -n $RAM_TMP ]]; then rm -rf "$RAM_TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# N free TCP ports on 127.0.0.1 (bound together, then released).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# wait_ready SYSTEM ENDPOINT: poll one acquire+release until it works (60 s).
wait_ready() {
  local deadline=$((SECONDS + 60))
  until "$PEER_BENCH" --system "$1" --endpoint "$2" --workload probe >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then echo "$1 at $2 not ready after 60 s" >&2; return 1; fi
    sleep 0.2
  done
}

# bench SYSTEM LABEL NODES ENDPOINT PIDS WORKLOAD...
bench() {
  local system=$1 label=$2 nodes=$3 endpoint=$4 pids=$5
  shift 5
  local w
  for w in "$@"; do
    local clients
    case $w in
      w1) clients=1,8,32 ;;
      w2) clients=8,32 ;;
      w3) clients=8 ;;
    esac
    "${GEN_PIN[@]}" "$PEER_BENCH" --system "$system" --label "$label" --nodes "$nodes" \
      --endpoint "$endpoint" --server-pid "$pids" --workload "$w" --clients "$clients" \
      --seconds "$SECONDS_PER_ROW" --locks "$W3_LOCKS" --settle-seconds "$W3_SETTLE" \
      --jsonl "$OUT/results.jsonl"
  done
}

run_redis() {  # LABEL "WORKLOADS" EXTRA-ARGS...
  local label=$1 workloads=$2; shift 2
  local port; port=$(free_ports 1)
  rm -rf "${TMP:?}/$label"
  mkdir -p "$TMP/$label"
  "${SERVER_PIN[@]}" redis-server --port "$port" --bind 127.0.0.1 --dir "$TMP/$label" \
    --daemonize no --logfile "$TMP/$label/redis.log" "$@" &
  PIDS+=($!)
  wait_ready redis "127.0.0.1:$port"
  # shellcheck disable=SC2086 # a list of workloads
  bench redis "$label" 1 "127.0.0.1:$port" "${PIDS[-1]}" $workloads
  stop_all
}

run_zookeeper() {  # WORKLOADS...
  local port; port=$(free_ports 1)
  local dir=$TMP/zookeeper
  rm -rf "$dir"
  mkdir -p "$dir/data"
  # The Debian zoo.cfg defaults, with our port and data dir; the admin HTTP
  # server (fixed port 8080) is off so it cannot clash.
  cat >"$dir/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
CFG
  "${SERVER_PIN[@]}" java -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
    org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg" >"$dir/zk.log" 2>&1 &
  PIDS+=($!)
  wait_ready zookeeper "127.0.0.1:$port"
  bench zookeeper zookeeper 1 "127.0.0.1:$port" "${PIDS[-1]}" "$@"
  stop_all
}

run_etcd() {  # NODES WORKLOADS...
  local n=$1; shift
  local ports; read -r -a ports <<<"$(free_ports $((2 * n)))"
  local cluster="" endpoints="" pids="" i
  for ((i = 0; i < n; i++)); do
    cluster+="${cluster:+,}e$i=http://127.0.0.1:${ports[$((2 * i + 1))]}"
    endpoints+="${endpoints:+,}127.0.0.1:${ports[$((2 * i))]}"
  done
  for ((i = 0; i < n; i++)); do
    local c=${ports[$((2 * i))]} p=${ports[$((2 * i + 1))]}
    rm -rf "${TMP:?}/etcd$n-$i"
    mkdir -p "$TMP/etcd$n-$i"
    "${SERVER_PIN[@]}" etcd --name "e$i" --data-dir "$TMP/etcd$n-$i/data" \
      --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
      --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
      --initial-cluster "$cluster" --initial-cluster-state new >"$TMP/etcd$n-$i/etcd.log" 2>&1 &
    PIDS+=($!)
    pids+="${pids:+,}$!"
  done
  wait_ready etcd "$endpoints"
  local label=etcd; [[ $n -gt 1 ]] && label="etcd ${n} nodes"
  bench etcd "$label" "$n" "$endpoints" "$pids" "$@"
  stop_all
}

run_latchkey() {  # NODES WORKLOADS...  (LATCHKEY_DATA_ROOT, LATCHKEY_LABEL: latchkey-ram)
  local n=$1; shift
  local root=${LATCHKEY_DATA_ROOT:-$TMP}
  local ports; read -r -a ports <<<"$(free_ports $((2 * n)))"
  local peers="" endpoints="" pids="" i
  for ((i = 0; i < n; i++)); do
    peers+="${peers:+,}$((i + 1))=127.0.0.1:${ports[$((2 * i + 1))]}@127.0.0.1:${ports[$((2 * i))]}"
    endpoints+="${endpoints:+,}127.0.0.1:${ports[$((2 * i))]}"
  done
  for ((i = 0; i < n; i++)); do
    local dir=$root/latchkey$n-$i
    rm -rf "$dir"
    mkdir -p "$dir"
    local args=(--data-dir "$dir/data" --log-level warn)
    if [[ $n -gt 1 ]]; then
      args+=(--node-id $((i + 1)) --peers "$peers")
    else
      args+=(--listen "127.0.0.1:${ports[0]}" --raft-address "127.0.0.1:${ports[1]}")
    fi
    "${SERVER_PIN[@]}" "$LATCHKEY" server "${args[@]}" >"$dir/latchkey.log" 2>&1 &
    PIDS+=($!)
    pids+="${pids:+,}$!"
  done
  wait_ready latchkey "$endpoints"
  local label=${LATCHKEY_LABEL:-latchkey}; [[ $n -gt 1 ]] && label="latchkey ${n} nodes"
  bench latchkey "$label" "$n" "$endpoints" "$pids" "$@"
  stop_all
}

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "command: bench/peers/run.sh $ARGS"
  echo "seconds per row: $SECONDS_PER_ROW; W3 locks: $W3_LOCKS; rounds: $ROUNDS; $PINNING"
  echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "versions: redis $(redis-server --version | grep -o 'v=[^ ]*' | cut -c3-)," \
    "etcd $(etcd --version | head -1 | awk '{print $3}')," \
    "zookeeper $(dpkg-query -W -f='${Version}' zookeeper)," \
    "latchkey $(git -C "$ROOT" rev-parse --short HEAD)"
} | tee "$OUT/machine.txt"
: >"$OUT/results.jsonl"

run_system() {  # SYSTEM
  # Each system starts on a quiet disk: the previous one's data is deleted
  # and its dirty pages written back first, so one system's writeback cannot
  # land in the next one's rows. (Checked once, `--only "etcd latchkey"`
  # with and without: Latchkey W1 C=1 806 vs 1 282 pairs/s, i.e. within the
  # host's run-to-run noise; kept as hygiene, not as a measured gain.)
  rm -rf "${TMP:?}"/*
  sync
  case $1 in
    # W3 runs on a fresh server: its memory per held lock is measured from
    # an idle, empty server, not from whatever W1/W2 left in the heap (the
    # first 10 s runs' W3 "before" figures included it and made Latchkey's
    # growth negative once its idle compaction returned W1/W2's log).
    redis) run_redis redis "w1 w2"; run_redis redis w3 ;;
    redis-aof)
      run_redis "redis aof always" "w1 w2" --appendonly yes --appendfsync always
      run_redis "redis aof always" w3 --appendonly yes --appendfsync always ;;
    zookeeper) run_zookeeper w1 w2; run_zookeeper w3 ;;
    etcd) run_etcd 1 w1 w2; run_etcd 1 w3 ;;
    latchkey) run_latchkey 1 w1 w2; run_latchkey 1 w3 ;;
    latchkey3) run_latchkey 3 w1 ;;
    latchkey-ram)
      if [[ -z $RAM_TMP ]]; then RAM_TMP=$(mktemp -d /dev/shm/peer-bench-ram.XXXXXX); fi
      LATCHKEY_DATA_ROOT=$RAM_TMP LATCHKEY_LABEL="latchkey log in RAM (diagnostic)" \
        run_latchkey 1 w1 w2
      rm -rf "${RAM_TMP:?}"/* ;;
    etcd3) run_etcd 3 w1 ;;
    *) echo "unknown system $1" >&2; exit 64 ;;
  esac
}

read -r -a SYSTEMS <<<"$ONLY"
for ((round = 1; round <= ROUNDS; round++)); do
  for ((k = 0; k < ${#SYSTEMS[@]}; k++)); do
    run_system "${SYSTEMS[$(((k + round - 1) % ${#SYSTEMS[@]}))]}"
  done
  # Tag this round's rows (peer_bench appends them untagged).
  python3 - "$OUT/results.jsonl" "$round" <<'PY'
import json, sys
path, rnd = sys.argv[1], int(sys.argv[2])
rows = [json.loads(l) for l in open(path) if l.strip()]
with open(path, "w") as f:
    for r in rows:
        r.setdefault("round", rnd)
        f.write(json.dumps(r) + "\n")
PY
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"

python3 "$ROOT/bench/peers/report.py" "$OUT"
echo "results in $OUT (results.md, results.jsonl, peers.png)"
