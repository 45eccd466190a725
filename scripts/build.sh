#!/usr/bin/env bash
# Installs dependencies (Debian 12 packages) and builds Latchkey.
#   scripts/build.sh [BUILD_DIR] [BUILD_TYPE] [TARGET...]
# Defaults: build/, RelWithDebInfo, every target. Prints the path of the
# latchkey binary.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
BUILD_TYPE=${2:-RelWithDebInfo}
shift $(( $# > 2 ? 2 : $# ))
TARGETS=()
for t in "$@"; do TARGETS+=(--target "$t"); done
./scripts/install-deps.sh
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >/dev/null
cmake --build "$BUILD_DIR" --parallel "$(nproc)" "${TARGETS[@]}"
echo "built $BUILD_DIR/src/cli/latchkey"
