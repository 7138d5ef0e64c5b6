#!/usr/bin/env bash
# The cost of a rate-limit decision in the memory store and in the Redis
# store (docs/benchmarks.md, "Rate-limit store"): starts a redis-server of
# its own (no persistence) on a Unix socket and on a loopback TCP port, and
# runs the ignored benchmark test `rate_limit_store_cost` of the gateway
# against each. Prints, per store: the gateway thread's CPU per decision,
# Redis' own CPU per decision, p50 and p99 latency, one decision at a time
# and with 64 in flight.
#
#   benches/rate-limit-store.sh              # debug build (already built by the tests)
#   PROFILE=release benches/rate-limit-store.sh
#   TRADEHABIT_BENCH_POOL=1 PROFILE=release benches/rate-limit-store.sh   # another pool_size
#   benches/rate-limit-store.sh --through-gateway   # release gateways + wrk, memory vs Redis
#                                                   # (benches/rate-limit-store/through-gateway.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 1; }
dir=$(mktemp -d)
port=${REDIS_PORT:-56379}
redis-server --port "$port" --bind 127.0.0.1 --unixsocket "$dir/redis.sock" --unixsocketperm 700 \
  --save "" --appendonly no --daemonize no --loglevel warning >/dev/null &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null; wait $redis_pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  [ -S "$dir/redis.sock" ] && break
  sleep 0.05
done

if [ "${1:-}" = --through-gateway ]; then
    root=$(pwd)
    source benches/rate-limit-store/through-gateway.sh
    exit 0
fi

profile=()
[ "${PROFILE:-debug}" = release ] && profile=(--release)
for address in "unix:$dir/redis.sock" "redis://127.0.0.1:$port"; do
  echo "== $address (${PROFILE:-debug} build)"
  TRADEHABIT_BENCH_REDIS=$address cargo test -q -p tradehabit-gateway --lib "${profile[@]}" \
    rate_limit_store_cost -- --ignored --nocapture --test-threads 1 2>&1 | grep -E "sequential|in flight|flood"
done
