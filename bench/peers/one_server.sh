# shellcheck shell=bash
# Sourced by pair_cost.sh and held_memory.sh: starts one single-node Latchkey
# server from $B (RelWithDebInfo build dir) with its data in a temp dir, stops
# it and removes the dir on exit, and waits until one lock works. Sets D (the
# temp dir), SP (the server's PID) and EP (its client endpoint).
# SERVER_ARGS adds server flags.
D=$(mktemp -d "/tmp/${ONE_SERVER_TAG:-latchkey}.XXXXXX")
# shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
"$B/src/cli/latchkey" server --data-dir "$D/data" --listen 127.0.0.1:0 \
  --raft-address 127.0.0.1:0 --ready-file "$D/ready" --log-level warn ${SERVER_ARGS:-} \
  >"$D/log" 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null || true; wait $SP 2>/dev/null || true; rm -rf "$D"' EXIT
for _ in $(seq 100); do [[ -s $D/ready ]] && break; sleep 0.1; done
EP=$(cat "$D/ready")
"$B/bench/peers/peer_bench" --system latchkey --endpoint "$EP" --workload probe >/dev/null
