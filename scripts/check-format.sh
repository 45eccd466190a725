#!/usr/bin/env bash
# Fails if a C++ file differs from .clang-format. Fix with: scripts/check-format.sh --fix
set -euo pipefail
cd "$(dirname "$0")/.."
CF=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$CF" ]; then
  echo "check-format: clang-format not installed; skipping" >&2
  exit 0
fi
mapfile -t files < <(git ls-files '*.cc' '*.h' 2>/dev/null || find src include tests bench -name '*.cc' -o -name '*.h')
if [ "${1:-}" = "--fix" ]; then
  "$CF" -i "${files[@]}"
  exit 0
fi
"$CF" --dry-run --Werror "${files[@]}"
echo "check-format: ${#files[@]} files formatted"
