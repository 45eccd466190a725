#!/usr/bin/env bash
# Memory per held lock on a fresh single-node server: starts one from
# BUILD_DIR (data in a temp dir), runs peer_bench's W3 row (LOCKS distinct
# locks taken by 8 clients and held) and prints the server's RSS growth per
# held lock right after the last acquire and at its lowest within SETTLE
# seconds, the locks still held (Latchkey's idle compaction drops the Raft
# log 2 s after writes stop, design 0018).
#
#   bench/peers/held_memory.sh BUILD_DIR [LOCKS] [SETTLE_SECONDS]
#   e.g. bench/peers/held_memory.sh build-rel 10000 4
#        SERVER_ARGS="--idle-compaction-ms 0" bench/peers/held_memory.sh build-rel
set -euo pipefail
B=$1; L=${2:-10000}; S=${3:-4}
ONE_SERVER_TAG=held-memory
# shellcheck source=bench/peers/one_server.sh
source "$(dirname "$0")/one_server.sh"
"$B/bench/peers/peer_bench" --system "$SYSTEM" --endpoint "$EP" --workload w3 --clients 8 \
  --locks "$L" --settle-seconds "$S" --server-pid "$SP" --jsonl "$D/r.jsonl" >/dev/null
python3 - "$D/r.jsonl" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
n = r["ops"] or 1
b, a, s = r["rss_before_kb"], r["rss_after_kb"], r.get("rss_settled_kb") or r["rss_after_kb"]
print(f'{n} locks held in {r["seconds"]:.1f} s, errors {r["errors"]} | RSS {b} -> {a} KiB, '
      f'lowest {s} KiB | bytes per held lock: {(a - b) * 1024 / n:.0f} after the last acquire, '
      f'{(s - b) * 1024 / n:.0f} settled')
PY
