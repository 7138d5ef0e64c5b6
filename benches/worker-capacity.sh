#!/usr/bin/env bash
# One worker's capacity (docs/scaling.md, "Capacity per worker"): starts a
# release `tradehabit-worker` process on a socket of its own and drives it
# with the socket_load bench (worker/benches/socket_load.rs):
#
#   1. uploads/s: `POST /api/analyze` with the 92 KB, 314-trade fixture;
#   2. reads/s: `GET /api/summary` of an analysed session;
#   3. memory per session: the worker's RSS and its own session_bytes
#      gauge before and after SESSIONS more principals upload the fixture.
#
# For 1 and 2 it also reads the worker's CPU time (/proc/PID/stat), so the
# CPU cost per request is known even on a shared, busy machine. Builds run
# under `nice -n 19`; the measurement at normal priority. Prints the load
# average before each step: quote it with the numbers.
#
#   benches/worker-capacity.sh
#   CONNECTIONS=8 SECONDS_PER_SCENARIO=10 SESSIONS=1000 benches/worker-capacity.sh
set -euo pipefail
cd "$(dirname "$0")/.."

connections=${CONNECTIONS:-8}
seconds=${SECONDS_PER_SCENARIO:-10}
sessions=${SESSIONS:-1000}
target=${CARGO_TARGET_DIR:-target}
command -v curl >/dev/null || { echo "needs curl (apt-get install curl) to read the worker's metrics" >&2; exit 1; }

nice -n 19 cargo build --release --locked -q -p tradehabit-worker --bin tradehabit-worker
bench=$(nice -n 19 cargo bench --locked -p tradehabit-worker --bench socket_load --no-run 2>&1 |
  sed -n 's/.*(\(.*socket_load-[0-9a-f]*\)).*/\1/p' | tail -1)
[ -x "$bench" ] || { echo "could not find the socket_load bench binary" >&2; exit 1; }

dir=$(mktemp -d)
socket="$dir/worker.sock"
# Room for every session: the measurement must not evict.
RUST_LOG=warn "$target/release/tradehabit-worker" --socket "$socket" --log-format text \
  --max-sessions $((sessions + 1000)) --max-session-bytes $((8 * 1024 * 1024 * 1024)) \
  >"$dir/worker.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 200); do
  [ -S "$socket" ] && break
  sleep 0.05
done
[ -S "$socket" ] || { cat "$dir/worker.log" >&2; exit 1; }

tick=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }
metric() {
  curl -s --unix-socket "$socket" http://worker/internal/metrics |
    awk -v name="$1" '$1 == name { print $2 }'
}

echo "commit $(git rev-parse --short HEAD), $(nproc) CPUs, $connections connections, ${seconds} s per scenario"
for scenario in analyze summary; do
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  before=$(cpu_ticks)
  line=$("$bench" --socket "$socket" --scenario "$scenario" --connections "$connections" \
    --seconds "$seconds" --warmup 2 | tail -n +2)
  after=$(cpu_ticks)
  echo "$line"
  sent=$(sed -n 's/.* sent \([0-9]*\) .*/\1/p' <<<"$line")
  awk -v t=$((after - before)) -v hz="$tick" -v n="$sent" \
    'BEGIN { printf "  worker CPU %.2f s for %d requests: %.1f us per request\n", t / hz, n, t / hz / n * 1e6 }'
done

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
rss_before=$(rss_kib)
bytes_before=$(metric tradehabit_worker_session_bytes)
"$bench" --socket "$socket" --sessions "$sessions" --connections "$connections" | tail -n +2
rss_after=$(rss_kib)
bytes_after=$(metric tradehabit_worker_session_bytes)
echo "  sessions active: $(metric tradehabit_worker_sessions_active)"
awk -v rb="$rss_before" -v ra="$rss_after" -v bb="$bytes_before" -v ba="$bytes_after" -v n="$sessions" 'BEGIN {
  printf "  RSS %.1f MiB -> %.1f MiB: %.0f KiB per session\n", rb / 1024, ra / 1024, (ra - rb) / n
  printf "  session_bytes (the worker'"'"'s estimate, what --max-session-bytes bounds): %.0f KiB per session\n", (ba - bb) / n / 1024
}'
