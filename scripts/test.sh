#!/usr/bin/env bash
# Installs, builds (Debug, assertions on, -Werror) and runs the whole test
# suite: every CTest label (unit, integration, ...). CI runs exactly this.
#   scripts/test.sh [extra ctest args], e.g. scripts/test.sh -L unit
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh build-test Debug
./scripts/check-format.sh
cd build-test
ctest --output-on-failure --timeout 600 -j "$(nproc)" "$@"
