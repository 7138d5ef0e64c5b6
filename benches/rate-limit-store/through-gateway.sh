#!/usr/bin/env bash
# `benches/rate-limit-store.sh --through-gateway`: the rate-limit store's
# cost through the real request path (docs/benchmarks.md, "Rate-limit
# store"). A release gateway (server.threads = 2) in front of a fixed
# nginx answer on a Unix socket, `wrk` with 64 keep-alive TLS connections
# on GET /api/health, which has one per-IP quota; the doors:
#
#   memory      the memory store
#   redis       the Redis store (Unix socket)
#   redis-base  the Redis store, BASELINE_BIN's gateway (only when set)
#
# and two scenarios: `allow` (the quota never refuses: every request is a
# Redis round trip) and `flood` (a 1/hour quota: every request but the
# first is refused). Reported per door and scenario (medians over the
# rounds): requests/s, p50, p99, gateway CPU µs/request and Redis CPU
# µs/request (user + system time from /proc over the requests served).
#
# Sourced by benches/rate-limit-store.sh with $root, $dir (the Redis
# socket's directory) and $redis_pid set.
#   GATEWAY_BIN=…  BASELINE_BIN=…  ROUNDS=3  DURATION=5  SCENARIOS="allow flood"
#   BASELINE_OMIT="refusal_delay"   # settings BASELINE_BIN's build does not know
#
# The refusal delay (`limits.refusal_delay`) is off: the flood measures the
# store's cost of each refusal, not how long the gateway holds them.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
SCENARIOS=${SCENARIOS:-allow flood}
BASE_PORT=${BASE_PORT:-18540}
for tool in nginx wrk openssl curl python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install -y nginx wrk openssl curl python3)" >&2; exit 1; }
done
if [ -z "${GATEWAY_BIN:-}" ]; then
    echo "building the gateway (release)…" >&2
    (cd "$root" && cargo build --release -q -p tradehabit-gateway)
    GATEWAY_BIN=${CARGO_TARGET_DIR:-$root/target}/release/tradehabit-gateway
fi
doors="memory redis"
[ -n "${BASELINE_BIN:-}" ] && doors="$doors redis-base"

work=$dir/through
mkdir -p "$work"
chmod 0711 "$dir" "$work"
pids=()
stop_all() {
    # With no pids, a bare `wait` would wait for Redis too, forever.
    [ ${#pids[@]} -gt 0 ] || return 0
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait "${pids[@]}" 2>/dev/null || true
    pids=()
}
trap 'stop_all; kill $redis_pid 2>/dev/null; wait $redis_pid 2>/dev/null; rm -rf "$dir"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat >"$work/upstream.conf" <<EOF
worker_processes 1;
pid $work/upstream.pid;
error_log $work/upstream-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen unix:$work/upstream.sock;
        location / { default_type application/json; return 200 '{"Status":"fine"}\n'; }
    }
}
EOF
nginx -c "$work/upstream.conf" -g 'daemon off;' & pids+=($!)

# gateway_toml DOOR SCENARIO PORT: one gateway's policy.
gateway_toml() {
    local door=$1 scenario=$2 port=$3 quota store=""
    quota='"1000000/minute"'
    [ "$scenario" = flood ] && quota='"1/hour"'
    case $door in redis*) store="[rate_limit]
store = \"redis\"
[rate_limit.redis]
address = \"unix:$dir/redis.sock\"" ;; esac
    cat <<EOF
[server]
listen = "127.0.0.1:$port"
threads = 2
[tls]
cert = "$work/cert.pem"
key = "$work/key.pem"
[limits]
max_connections_per_ip = 4096
max_requests_per_ip = 4096
max_upstream_per_ip = 256
refusal_delay = "0s"
[upstream]
address = "unix:$work/upstream.sock"
[admin]
listen = "127.0.0.1:0"
[audit]
output = "$work/audit-$door-$scenario.log"
$store
[[routes]]
name = "health"
path = "/api/health"
methods = ["GET"]
auth = "none"
rate_limit = { per_ip = [$quota] }
EOF
}

ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
results=$work/results.tsv
: >"$results"
printf "%-6s %-6s %-11s %9s %8s %8s %10s %10s\n" round scen door req/s p50_ms p99_ms gw_us/req redis_us/req >&2
for scenario in $SCENARIOS; do
    declare -A gw_pid=()
    port=$BASE_PORT
    for door in $doors; do
        port=$((port + 1))
        gateway_toml "$door" "$scenario" "$port" >"$work/$door-$scenario.toml"
        if [ "$door" = redis-base ]; then
            for key in ${BASELINE_OMIT:-}; do sed -i "/^$key = /d" "$work/$door-$scenario.toml"; done
        fi
        bin=$GATEWAY_BIN
        [ "$door" = redis-base ] && bin=$BASELINE_BIN
        RUST_LOG=error "$bin" run --config "$work/$door-$scenario.toml" & gw_pid[$door]=$!; pids+=($!)
        for _ in $(seq 100); do curl -sk -o /dev/null "https://127.0.0.1:$port/api/health" && break; sleep 0.1; done
        status=$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/api/health")
        case $scenario/$status in allow/200|flood/200|flood/429) ;; *) echo "$door $scenario answered $status" >&2; exit 1 ;; esac
        echo "$door $port" >>"$work/ports-$scenario"
    done
    for round in $(seq "$ROUNDS"); do
        while read -r door port; do
            before=$(ticks "${gw_pid[$door]}") rbefore=$(ticks "$redis_pid")
            wrk -t1 -c64 -d"${DURATION}s" --latency "https://127.0.0.1:$port/api/health" >"$work/wrk.out"
            after=$(ticks "${gw_pid[$door]}") rafter=$(ticks "$redis_pid")
            line=$(python3 - "$DURATION" "$((after - before))" "$((rafter - rbefore))" "$work/wrk.out" <<'PY'
import os, re, sys
duration, gw, rd = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
text = open(sys.argv[4]).read()
def ms(v):
    n, unit = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 1e-3, "ms": 1, "s": 1e3}[unit]
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
n = int(re.search(r"(\d+) requests in", text).group(1))
tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
print(f"{n / duration:.0f}\t{p50:.3f}\t{p99:.3f}\t{gw * tick_us / n:.1f}\t{rd * tick_us / n:.1f}")
PY
)
            printf "%s\t%s\t%s\t%s\n" "$round" "$scenario" "$door" "$line" >>"$results"
            printf "%-6s %-6s %-11s %9s %8s %8s %10s %10s\n" "$round" "$scenario" "$door" $line >&2
        done < <(if [ $((round % 2)) = 0 ]; then tac "$work/ports-$scenario"; else cat "$work/ports-$scenario"; fi)
    done
    for door in $doors; do kill "${gw_pid[$door]}"; wait "${gw_pid[$door]}" 2>/dev/null || true; done
done
stop_all

echo
echo "through the gateway: $ROUNDS rounds x ${DURATION} s, medians; $(uptime | sed 's/^.*load/load/'); $(nproc) cores; commit $(cd "$root" && git rev-parse --short HEAD)"
python3 - "$results" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)     # (scenario, door) -> each round's values
rounds = collections.defaultdict(dict)   # (scenario, round) -> door -> values
for line in open(sys.argv[1]):
    round_, scenario, door, *values = line.rstrip("\n").split("\t")
    values = [float(v) for v in values]
    rows[scenario, door].append(values)
    rounds[scenario, round_][door] = values
print("| scenario | door | req/s | p50 ms | p99 ms | gateway CPU µs/req | Redis CPU µs/req |")
print("|---|---|---:|---:|---:|---:|---:|")
for (scenario, door), values in rows.items():
    med = [statistics.median(v[i] for v in values) for i in range(5)]
    print(f"| {scenario} | {door} | {med[0]:,.0f} | {med[1]:.2f} | {med[2]:.2f} | {med[3]:.1f} | {med[4]:.1f} |")
# The machine's noise moves whole rounds: each door against the memory
# store in the same round, then the median of those ratios.
print()
print("| scenario | door ÷ memory, same round | gateway CPU: median (min–max) | p99: median (min–max) |")
print("|---|---|---|---|")
text = lambda r: f"{statistics.median(r):.2f} ({min(r):.2f}–{max(r):.2f})"
for scenario, door in rows:
    if door == "memory":
        continue
    pairs = [by for (s, _), by in rounds.items() if s == scenario and door in by and "memory" in by]
    cpu = [by[door][3] / by["memory"][3] for by in pairs]
    p99 = [by[door][2] / by["memory"][2] for by in pairs]
    print(f"| {scenario} | {door} ({len(pairs)} rounds) | {text(cpu)} | {text(p99)} |")
PY
