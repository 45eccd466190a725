#!/usr/bin/env bash
# Long nemesis run on real processes (docs/testing.md, "Nemesis and checkers").
#   scripts/nemesis.sh [SECONDS] [SEED] [NODES]
# Defaults: 600 s, a seed from the clock (printed), 3 nodes. Partitions need
# root (network namespaces); without it the schedule has no partitions.
# On failure the histories are kept and their directory is printed.
# LATCHKEY_BUILD_DIR picks the build directory (default build-test, as
# scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_SECONDS=${1:-600}
SEED=${2:-$(( $(date +%s) % 1000000007 ))}
NODES=${3:-3}
BUILD_DIR=${LATCHKEY_BUILD_DIR:-build-test}
./scripts/build.sh "$BUILD_DIR" Debug latchkey nemesis_worker nemesis_test >/dev/null
echo "nemesis: seed=$SEED seconds=$RUN_SECONDS nodes=$NODES"
LATCHKEY_NEMESIS_SEED=$SEED LATCHKEY_NEMESIS_SECONDS=$RUN_SECONDS LATCHKEY_NEMESIS_NODES=$NODES \
  exec "$BUILD_DIR"/tests/fault/nemesis_test --gtest_filter='NemesisTest.RandomSchedule*'
