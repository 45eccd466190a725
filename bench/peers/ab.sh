#!/usr/bin/env bash
# A/B of two server configurations on this noisy machine: runs ROUNDS
# alternating rounds of one `pair_cost.sh` row per arm (A first in odd
# rounds, B first in even ones) and prints every row, then per arm the
# median pairs/s, the median of the per-round ratios B/A and how many
# rounds B won. An arm is a build dir plus optional server flags.
#
#   bench/peers/ab.sh W C ROUNDS BUILD_A "ARGS_A" BUILD_B "ARGS_B" [SECONDS]
#   e.g. bench/peers/ab.sh w1 1 8 build-rel "" build-rel "--direct-writes true"
#        bench/peers/ab.sh w2 32 8 /tmp/base/build-rel "" build-rel ""
#        PIN="0 1" bench/peers/ab.sh w1 32 6 ...   # pinned as run.sh pins (pair_cost.sh)
#
# The generator is always BUILD_B's peer_bench, so only the server differs.
set -euo pipefail
W=$1; C=$2; R=$3; BA=$4; AA=$5; BB=$6; AB=$7; S=${8:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
rates_a=(); rates_b=()
row() {  # BUILD ARGS -> prints the row, sets RATE
  local out
  out=$(SERVER_ARGS="$2" SERVER_BUILD="$1" "$HERE/pair_cost.sh" "$BB" "$W" "$C" "$S")
  echo "  $out"
  RATE=$(sed -n 's/.*pairs\/s=\([0-9]*\).*/\1/p' <<<"$out")
}
for ((i = 1; i <= R; i++)); do
  echo "round $i"
  if ((i % 2)); then
    row "$BA" "$AA"; rates_a+=("$RATE"); row "$BB" "$AB"; rates_b+=("$RATE")
  else
    row "$BB" "$AB"; rates_b+=("$RATE"); row "$BA" "$AA"; rates_a+=("$RATE")
  fi
done
python3 - "${rates_a[*]}" "${rates_b[*]}" "$W" "$C" "$BA $AA" "$BB $AB" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
r = [y / x for x, y in zip(a, b) if x > 0]
print(f"{sys.argv[3].upper()} C={sys.argv[4]}, {len(a)} rounds | A ({sys.argv[5].strip()}): "
      f"median {statistics.median(a):.0f} pairs/s | B ({sys.argv[6].strip()}): median "
      f"{statistics.median(b):.0f} | B/A per round: median {statistics.median(r):.3f}, "
      f"range {min(r):.3f}-{max(r):.3f}, B faster in {sum(x > 1 for x in r)} of {len(r)}")
PY
