#!/usr/bin/env bash
# Load under attack: legitimate traders' success rate and p99 latency through
# the real gateway and worker (release builds, the shipped strict policy),
# first alone, then while one client floods the API far beyond its rate
# limit and hundreds of slow connections are held open. The measuring and
# attacking clients are tests/examples/load_under_attack.rs.
#
#   benches/load-under-attack.sh                       # 2 traders x 5 req/s, 45 s per phase
#   benches/load-under-attack.sh --flood-rate 0        # flood as fast as the client can
#   benches/load-under-attack.sh --attacker-nice 0     # attackers' clients at the stack's priority
#   benches/load-under-attack.sh --help                # every knob
#
# Target: 100 % success under attack and p99 within 2x of the
# quiet baseline. Everything listens on loopback addresses only (the clients
# bind 127.0.0.2, 127.0.1.x and 127.0.2.x so that per-address limits see
# them as different clients) and is stopped on exit. Prints a Markdown table.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
cd "$root"
echo "building the gateway, the worker and the load client (release)…" >&2
cargo build --release -q -p tradehabit-gateway -p tradehabit-worker
cargo build --release -q -p tradehabit-e2e --example load_under_attack
# Hundreds of sockets: make sure the descriptor limit is not the bottleneck.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec "$target/release/examples/load_under_attack" \
    --gateway-bin "$target/release/tradehabit-gateway" \
    --worker-bin "$target/release/tradehabit-worker" \
    "$@"
