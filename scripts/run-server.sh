#!/usr/bin/env bash
# Installs, builds and starts a single-node Latchkey server in the
# foreground: data in ./latchkey-data, clients on 127.0.0.1:7411.
# Extra arguments go to `latchkey server` (see `latchkey server --help`); a
# --listen or --data-dir given here replaces the default.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh build RelWithDebInfo latchkey
exec ./build/src/cli/latchkey server --data-dir ./latchkey-data --listen 127.0.0.1:7411 "$@"
