#!/usr/bin/env bash
# Builds every libFuzzer target with clang++-14 (ASan + UBSan) and runs each
# briefly from its seed corpus. A crash fails the run and leaves the input
# in the work dir; turn it into a regression test.
#   tests/fuzz/run_fuzzers.sh BUILD_DIR [SECONDS_PER_TARGET]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "$1" && pwd)
SECS=${2:-15}
OUT="$BUILD/fuzz"
mkdir -p "$OUT"
CXX=$(command -v clang++-14 || command -v clang++)
FLAGS=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$SRC/src" -I"$SRC/tests" -I"$BUILD/proto" -DLATCHKEY_VERSION=\"fuzz\")
PROTO_SRCS=("$BUILD/proto/latchkey.pb.cc" "$BUILD/proto/log.pb.cc")
COMMON=("$SRC/src/common/status.cc" "$SRC/src/common/duration.cc")
# Lua 5.4 (C++ build) for the core's user methods.
read -r -a LUA_CFLAGS <<<"$(pkg-config --cflags lua5.4-c++)"
read -r -a LUA_LIBS <<<"$(pkg-config --libs lua5.4-c++)"
FLAGS+=("${LUA_CFLAGS[@]}")
# Every non-test source of the core, so new core files need no edit here.
mapfile -t CORE < <(find "$SRC/src/core" -maxdepth 1 -name '*.cc' ! -name '*_test.cc' | sort)

# Every source is compiled once into $OUT/obj (in parallel, one job per
# core; rebuilt when it or a header it includes changed), then each fuzzer
# is linked from the objects it needs. Compiling the core and the generated
# protobuf code once instead of once per fuzzer keeps CI's fuzz step short.
OBJ="$OUT/obj"
mkdir -p "$OBJ"
obj_of() {  # source -> object path
  local rel=${1#"$SRC"/}
  rel=${rel#"$BUILD"/}
  echo "$OBJ/${rel//\//_}.o"
}
compile() {  # source
  local src=$1 o
  o=$(obj_of "$src")
  if [ -f "$o" ] && [ -f "$o.d" ]; then
    local stale=0 dep
    for dep in $(sed -e 's/\\$//' -e 's/^[^:]*://' "$o.d"); do
      if [ "$dep" -nt "$o" ]; then stale=1; break; fi
    done
    [ $stale = 0 ] && return 0
  fi
  "$CXX" "${FLAGS[@]}" -MMD -MF "$o.d" -c "$src" -o "$o"
}
link() {  # name sources...
  local name=$1; shift
  local objs=() s
  for s in "$@"; do objs+=("$(obj_of "$s")"); done
  "$CXX" "${FLAGS[@]}" "${objs[@]}" -o "$OUT/$name" -lprotobuf -lpthread "${LUA_LIBS[@]}"
}
ALL_SRCS=("$SRC/tests/fuzz/frame_decoder_fuzz.cc" "$SRC/tests/fuzz/names_fuzz.cc"
          "$SRC/tests/fuzz/log_entry_fuzz.cc" "$SRC/tests/fuzz/snapshot_fuzz.cc"
          "$SRC/tests/fuzz/request_fuzz.cc" "$SRC/tests/sim/sim_checkers.cc"
          "$SRC/tests/fuzz/http_request_fuzz.cc" "$SRC/src/server/metrics_http.cc"
          "$SRC/src/transport/endpoint.cc" "$SRC/src/common/log.cc"
          "$SRC/src/transport/frame.cc" "${CORE[@]}" "${COMMON[@]}" "${PROTO_SRCS[@]}")
JOBS=$(nproc)
pids=()
failed=0
for src in "${ALL_SRCS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || failed=1; done
  compile "$src" &
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
if [ $failed != 0 ]; then echo "fuzz: compiling the fuzz targets failed"; exit 1; fi
link frame_decoder_fuzz "$SRC/tests/fuzz/frame_decoder_fuzz.cc" "$SRC/src/transport/frame.cc" "${COMMON[@]}"
link names_fuzz "$SRC/tests/fuzz/names_fuzz.cc" "${COMMON[@]}" "$SRC/src/core/names.cc"
link log_entry_fuzz "$SRC/tests/fuzz/log_entry_fuzz.cc" "${CORE[@]}" "${COMMON[@]}" "${PROTO_SRCS[@]}"
link snapshot_fuzz "$SRC/tests/fuzz/snapshot_fuzz.cc" "${CORE[@]}" "${COMMON[@]}" "${PROTO_SRCS[@]}"
link request_fuzz "$SRC/tests/fuzz/request_fuzz.cc" "$SRC/tests/sim/sim_checkers.cc" \
  "$SRC/src/transport/frame.cc" "${CORE[@]}" "${COMMON[@]}" "${PROTO_SRCS[@]}"
link http_request_fuzz "$SRC/tests/fuzz/http_request_fuzz.cc" "$SRC/src/server/metrics_http.cc" \
  "$SRC/src/transport/endpoint.cc" "$SRC/src/common/log.cc" "${COMMON[@]}"

status=0
for t in frame_decoder_fuzz names_fuzz log_entry_fuzz snapshot_fuzz request_fuzz http_request_fuzz; do
  corpus="$OUT/corpus-$t"
  mkdir -p "$corpus"
  if [ -d "$SRC/tests/fuzz/corpus/$t" ]; then cp -n "$SRC/tests/fuzz/corpus/$t"/* "$corpus/" 2>/dev/null || true; fi
  echo "fuzz: $t for ${SECS}s"
  if ! (cd "$OUT" && "./$t" -max_total_time="$SECS" -rss_limit_mb=2048 -print_final_stats=1 "$corpus" \
        >"$OUT/$t.log" 2>&1); then
    echo "fuzz: $t FAILED; see $OUT/$t.log and crash-* in $OUT"
    tail -40 "$OUT/$t.log"
    status=1
  else
    grep -E "stat::number_of_executed_units" "$OUT/$t.log" || true
  fi
done
exit $status
