#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: the gateway and
# the floor (benches/floor) proxying keep-alive GETs over HTTP/1.1 and
# HTTP/2 to the same Unix-socket upstream as benches/gateway-vs-nginx.sh,
# with the same configurations. A count, not a time: the same build gives
# the same figure to within a few hundred instructions on a busy machine,
# so it shows a change in the work per request that a CPU-time run cannot
# tell from noise. It does not see what costs time without instructions
# (cache misses, a cold `memmove`, the scheduler), and callgrind counts a
# `rep movsb` copy once per byte: read it beside the CPU time of
# benches/gateway-vs-nginx.sh, never instead of it (docs/benchmarks.md,
# "Instructions per request").
#
#   benches/instructions.sh                       # gateway and floor, h1 and h2, 3000 requests each
#   GATEWAY_BIN=/path/to/tradehabit-gateway benches/instructions.sh
#   DOORS=gateway PROTOCOLS=h1 REQUESTS=5000 benches/instructions.sh
#   KEEP=/tmp/profiles benches/instructions.sh    # keep the callgrind files (callgrind_annotate)
#   CACHE_SIM=1 benches/instructions.sh           # + simulated cache misses per request (D1, LL)
#   ATOMICS=1 benches/instructions.sh             # + atomic read-modify-writes per request
#   ATOMICS=1 ATOMICS_TOP=30 benches/instructions.sh   # … and the functions that run them
#
# Needs: valgrind, nginx, h2load, openssl, python3, curl, cargo, objdump for ATOMICS (Debian:
# apt-get install -y valgrind nginx nghttp2-client). Listens on 127.0.0.1
# only; everything is stopped on exit.
set -euo pipefail

DOORS=${DOORS:-gateway floor}
PROTOCOLS=${PROTOCOLS:-h1 h2}
REQUESTS=${REQUESTS:-3000}
BASE_PORT=${BASE_PORT:-18540}

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
for tool in valgrind callgrind_control nginx h2load openssl python3 curl; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install -y valgrind nginx nghttp2-client)" >&2; exit 1; }
done
source "$root/benches/gateway-vs-nginx/configs.sh"
bench_binaries "$root" "$target"
bench_workdir

bench_upstream "$BASE_PORT"

# The callgrind file's own totals: the sum of every `summary:` line.
total_of() { awk '/^summary:/ { s += $2 } END { print s + 0 }' "$@"; }

echo "door     protocol  requests  instructions/request"
for door in $DOORS; do
    for protocol in $PROTOCOLS; do
        out=$work/$door-$protocol
        mkdir -p "$out"
        callgrind=(valgrind --tool=callgrind --compress-strings=no --compress-pos=no
                   "--callgrind-out-file=$out/callgrind.out")
        [ -n "${CACHE_SIM:-}" ] && callgrind+=(--cache-sim=yes)
        [ -n "${ATOMICS:-}" ] && callgrind+=(--dump-instr=yes)
        case $door in
            gateway) RUST_LOG=warn "${callgrind[@]}" "$gateway_bin" run --config "$work/gateway.toml" 2>"$out/valgrind.log" & ;;
            floor) "${callgrind[@]}" "$floor_bin" --listen "127.0.0.1:${port[floor]}" --cert "$work/cert.pem" \
                       --key "$work/key.pem" --upstream "$socket" 2>"$out/valgrind.log" & ;;
            *) echo "unknown door: $door (gateway or floor)" >&2; exit 1 ;;
        esac
        pid=$!
        pids+=("$pid")
        url=https://127.0.0.1:${port[$door]}/api/health
        for _ in $(seq 120); do curl -skf -o /dev/null "$url" && break; sleep 0.5; done
        case $protocol in h1) load=(--h1) ;; h2) load=(-m4) ;; esac
        # Warm-up (connections, pools, caches), then a dump that zeroes the
        # counts: the next dump holds the measured requests only.
        h2load "${load[@]}" -n 400 -c 8 "$url" >/dev/null
        callgrind_control -d "$pid" >/dev/null 2>&1
        sleep 1
        rm -f "$out"/callgrind.out.*
        result=$(h2load "${load[@]}" -n "$REQUESTS" -c 8 "$url")
        callgrind_control -d "$pid" >/dev/null 2>&1
        sleep 1
        ok=$(echo "$result" | awk '/^status codes:/ { print $3 }')
        [ "$ok" = "$REQUESTS" ] || { echo "$door $protocol: only $ok of $REQUESTS answered 2xx" >&2; exit 1; }
        total=$(total_of "$out"/callgrind.out.*)
        printf '%-8s %-9s %8d  %20d\n' "$door" "$protocol" "$REQUESTS" $((total / REQUESTS))
        if [ -n "${CACHE_SIM:-}" ]; then
            # events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
            awk -v n="$REQUESTS" '/^summary:/ { for (i = 2; i <= NF; i++) s[i] += $i }
                END { printf "         data reads %d, writes %d; misses per request: L1 instr %.0f, L1 data %.0f, last-level %.0f\n",
                      s[3] / n, s[4] / n, s[5] / n, (s[6] + s[7]) / n, (s[8] + s[9] + s[10]) / n }' "$out"/callgrind.out.*
        fi
        if [ -n "${ATOMICS:-}" ]; then
            case $door in gateway) binary=$gateway_bin ;; floor) binary=$floor_bin ;; esac
            python3 "$root/benches/gateway-vs-nginx/locked.py" "$out"/callgrind.out.* "$binary" "$REQUESTS" "${ATOMICS_TOP:-0}"
        fi
        [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$out"/callgrind.out.* "$KEEP/$door-$protocol.callgrind"
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
done
