# shellcheck shell=bash
# Sourced by pair_cost.sh and held_memory.sh: starts one server with its data
# in a temp dir, stops it and removes the dir on exit, and waits until one
# lock works. Sets D (the temp dir), SP (the server's PID), EP (its client
# endpoint) and SYSTEM (peer_bench's --system).
# PEER=latchkey (default): a single-node Latchkey from $B (RelWithDebInfo
# build dir), or from SERVER_BUILD when set (ab.sh); SERVER_ARGS adds server
# flags. PEER=redis or redis-aof: a Redis server as run.sh starts it
# (redis-aof: appendonly yes, appendfsync always).
D=$(mktemp -d "/tmp/${ONE_SERVER_TAG:-latchkey}.XXXXXX")
case ${PEER:-latchkey} in
  latchkey)
    SYSTEM=latchkey
    # shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
    "${SERVER_BUILD:-$B}/src/cli/latchkey" server --data-dir "$D/data" --listen 127.0.0.1:0 \
      --raft-address 127.0.0.1:0 --ready-file "$D/ready" --log-level warn ${SERVER_ARGS:-} \
      >"$D/log" 2>&1 &
    ;;
  redis | redis-aof)
    SYSTEM=redis
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    aof=()
    [[ $PEER == redis-aof ]] && aof=(--appendonly yes --appendfsync always)
    redis-server --port "$port" --bind 127.0.0.1 --dir "$D" --daemonize no \
      --logfile "$D/log" "${aof[@]}" &
    EP=127.0.0.1:$port
    ;;
  *) echo "PEER must be latchkey, redis or redis-aof" >&2; exit 64 ;;
esac
SP=$!
trap 'kill $SP 2>/dev/null || true; wait $SP 2>/dev/null || true; rm -rf "$D"' EXIT
if [[ $SYSTEM == redis ]]; then
  for _ in $(seq 100); do
    "$B/bench/peers/peer_bench" --system redis --endpoint "$EP" --workload probe >/dev/null 2>&1 && break
    sleep 0.1
  done
else
  for _ in $(seq 100); do [[ -s $D/ready ]] && break; sleep 0.1; done
  EP=$(cat "$D/ready")
fi
"$B/bench/peers/peer_bench" --system "$SYSTEM" --endpoint "$EP" --workload probe >/dev/null
