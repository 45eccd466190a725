#!/usr/bin/env bash
# Installs dependencies (Debian 12 packages) and builds Latchkey.
#   scripts/build.sh [BUILD_DIR] [BUILD_TYPE]
# Defaults: build/ and RelWithDebInfo. Prints the path of the latchkey binary.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
BUILD_TYPE=${2:-RelWithDebInfo}
./scripts/install-deps.sh
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >/dev/null
cmake --build "$BUILD_DIR" --parallel "$(nproc)"
echo "built $BUILD_DIR/src/cli/latchkey"
