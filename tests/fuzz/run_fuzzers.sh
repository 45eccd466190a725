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

build() {  # name sources...
  local name=$1; shift
  if [ ! -x "$OUT/$name" ] || [ -n "$(find "$@" -newer "$OUT/$name" 2>/dev/null | head -1)" ]; then
    "$CXX" "${FLAGS[@]}" "$@" -o "$OUT/$name" -lprotobuf -lpthread "${LUA_LIBS[@]}"
  fi
}
build frame_decoder_fuzz "$SRC/tests/fuzz/frame_decoder_fuzz.cc" "$SRC/src/transport/frame.cc" "${COMMON[@]}" &
build names_fuzz "$SRC/tests/fuzz/names_fuzz.cc" "${COMMON[@]}" "$SRC/src/core/names.cc" &
wait
build log_entry_fuzz "$SRC/tests/fuzz/log_entry_fuzz.cc" "${CORE[@]}" "${COMMON[@]}" "${PROTO_SRCS[@]}" &
build snapshot_fuzz "$SRC/tests/fuzz/snapshot_fuzz.cc" "${CORE[@]}" "${COMMON[@]}" "${PROTO_SRCS[@]}" &
build request_fuzz "$SRC/tests/fuzz/request_fuzz.cc" "$SRC/tests/sim/sim_checkers.cc" \
  "$SRC/src/transport/frame.cc" "${CORE[@]}" "${COMMON[@]}" "${PROTO_SRCS[@]}" &
wait

status=0
for t in frame_decoder_fuzz names_fuzz log_entry_fuzz snapshot_fuzz request_fuzz; do
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
