#!/usr/bin/env bash
# The gateway against nginx and HAProxy doing the same job, five scenarios in
# one run, rounds alternating (docs/benchmarks.md has the method and results):
#
#   get       HTTPS/1.1 keep-alive GET, 64 connections (wrk)
#   h2        HTTP/2 GET, 16 connections x 4 streams (h2load)
#   post      POST of a 92 KB multipart upload, 64 connections (wrk)
#   resumed   a new TLS connection per request, session resumed (benches/connect)
#   full      a new TLS connection per request, full handshake (benches/connect)
#
# Front doors (all TLS 1.3, the same ECDSA certificate, the same security
# headers, a request id, one log line per request, proxying with keep-alive
# to the same Unix-socket upstream):
#   gateway     tradehabit-gateway, open routes, the audit line
#   nginx       nginx, its access log (JSON, buffered 64 KiB, flushed each second)
#   haproxy     HAProxy, its log line (to stdout, a file)
#   gw-full     the gateway with the full policy: bearer JWT (HS256, iss, aud,
#               exp, sub, a scope), per-IP and per-principal rate limits,
#               CORS, the audit line; on the upload route the multipart check
#   floor       benches/floor: the gateway's stack (tokio, rustls, hyper) and
#               serving model proxying with none of its checks, no log line:
#               what the stack itself costs per request
#   nginx-full  nginx's closest equivalent: the bearer token checked through a
#               `map` (nginx cannot verify a JWT), per-IP and per-token
#               `limit_req`, the CORS allowlist through a `map`, the log line
#
# Reported per scenario (medians over the rounds): requests/s, p50, p99 and
# CPU µs per request of each front door (user + system time of all its
# processes from /proc, divided by the requests it served), and the ratios
# gateway ÷ reference and gw-full ÷ nginx-full. Then the target, per
# scenario: in each round the gateway's CPU per request against the lower of
# nginx's and HAProxy's in that round, its requests/s and p99 against
# nginx's, the medians, and whether they meet it (CPU ≤ 1, req/s ≥ 1,
# p99 ≤ 1, at least 5 rounds).
#
#   benches/gateway-vs-nginx.sh                 # 5 rounds x 6 s per scenario and door (~13 min)
#   benches/gateway-vs-nginx.sh --quick         # 2 rounds x 3 s (~3 min)
#   ROUNDS=7 DURATION=10 benches/gateway-vs-nginx.sh
#   REFERENCE=haproxy benches/gateway-vs-nginx.sh          # ratios against HAProxy
#   SCENARIOS="get h2" DOORS="gateway nginx" benches/gateway-vs-nginx.sh
#   GATEWAY_BIN=/path/to/tradehabit-gateway benches/gateway-vs-nginx.sh  # another build
#   BASELINE_BIN=/path/to/old/tradehabit-gateway benches/gateway-vs-nginx.sh  # + door "gw-base"
#   BASELINE_OMIT="max_requests_per_ip"   # settings the older build does not know
#   DOORS="gateway floor nginx haproxy"   # + the stack's floor (FLOOR_BIN: a prebuilt one)
#   (GATEWAY_BIN and CONNECT_BIN both set, and FLOOR_BIN when the floor runs: nothing is built)
#
# Needs: nginx, haproxy, wrk, h2load (Debian: apt-get install -y nginx haproxy
# wrk nghttp2-client), openssl, python3, cargo. Everything listens on
# 127.0.0.1 only and is stopped on exit.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-6}
if [ "${1:-}" = --quick ]; then ROUNDS=${QUICK_ROUNDS:-2}; DURATION=${QUICK_DURATION:-3}; fi
SCENARIOS=${SCENARIOS:-get h2 post resumed full}
DOORS=${DOORS:-gateway nginx haproxy gw-full nginx-full}
REFERENCE=${REFERENCE:-nginx}
BASE_PORT=${BASE_PORT:-18440}

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
source "$root/benches/gateway-vs-nginx/configs.sh"
bench_workdir

for tool in nginx haproxy wrk h2load openssl cargo python3 curl; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install -y nginx haproxy wrk nghttp2-client python3 curl)" >&2; exit 1; }
done

floor_bin=${FLOOR_BIN:-$target/release/bench-floor}
case " $DOORS " in *" floor "*) needs_floor=${FLOOR_BIN:-yes} ;; *) needs_floor= ;; esac
if [ -n "${GATEWAY_BIN:-}" ] && [ -n "${CONNECT_BIN:-}" ] && [ "$needs_floor" != yes ]; then
    gateway_bin=$GATEWAY_BIN connect_bin=$CONNECT_BIN   # no build
else
    echo "building the gateway, the connection client and the floor (release)…" >&2
    (cd "$root" && cargo build --release -q -p tradehabit-gateway -p tradehabit-bench-connect -p tradehabit-bench-floor)
    gateway_bin=${GATEWAY_BIN:-$target/release/tradehabit-gateway}
    connect_bin=${CONNECT_BIN:-$target/release/bench-connect}
fi
# BASELINE_BIN: another gateway build (e.g. of an earlier commit) as one
# more door, "gw-base", with the same open policy as "gateway".
# Listed once even when DOORS names it too: two processes on one port
# (SO_REUSEPORT) would split the load, and only one would be measured.
if [ -n "${BASELINE_BIN:-}" ]; then
    case " $DOORS " in *" gw-base "*) ;; *) DOORS="$DOORS gw-base" ;; esac
fi

# The ports, the bearer token, the configurations and the upstream; the
# 92 KB multipart body.
bench_upstream "$BASE_PORT"
boundary=bench-boundary-7c1f
python3 - "$work/upload.body" "$boundary" <<'PY'
import sys
path, boundary = sys.argv[1], sys.argv[2]
rows = ["Instrument,Action,Quantity,Price,Time,ID,E/X,Position,Order ID,Name,Commission,Rate,Account,Connection"]
i = 0
while sum(len(r) + 1 for r in rows) < 92 * 1024 - 400:
    i += 1
    rows.append(f"MNQ 03-25,Buy,1,{21000 + i % 50}.25,1/2/2025 9:{i % 60:02d}:00 AM,{i},Entry,1 L,{10000 + i},Entry,0.52,1,Sim101,Bench")
csv = "\n".join(rows) + "\n"
body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"orders.csv\"\r\n"
        f"Content-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n")
open(path, "w").write(body)
PY
cat >"$work/post.lua" <<EOF
local f = io.open("$work/upload.body", "rb")
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=$boundary"
EOF
auth="Authorization: Bearer $token"
origin="Origin: https://app.tradehab.it"
# The credentials and the Origin go to the full-policy doors only (an open
# route without a CORS allowlist refuses a cross-origin upload).
set_headers() {
    case $1 in
        *-full) hdr=(-H "$auth" -H "$origin"); chdr=(--header "$auth" --header "$origin") ;;
        *) hdr=(); chdr=() ;;
    esac
}

# BASELINE_OMIT: settings an older build does not know, left out of its
# policy (e.g. BASELINE_OMIT="max_requests_per_ip max_upstream_per_ip").
if [ -f "$work/gw-base.toml" ]; then
    for key in ${BASELINE_OMIT:-}; do sed -i "/^$key = /d" "$work/gw-base.toml"; done
fi
declare -A door_pid
for door in $DOORS; do
    case $door in
        gateway|gw-full) RUST_LOG=warn "$gateway_bin" run --config "$work/$door.toml" & ;;
        gw-base) RUST_LOG=warn "$BASELINE_BIN" run --config "$work/$door.toml" & ;;
        nginx|nginx-full) nginx -c "$work/nginx/$door.conf" -g 'daemon off;' & ;;
        floor) "$floor_bin" --listen "127.0.0.1:${port[floor]}" --cert "$work/cert.pem" --key "$work/key.pem" --upstream "$socket" & ;;
        haproxy) haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy-access.log" 2>"$work/haproxy-error.log" & ;;
        *) echo "unknown door: $door" >&2; exit 1 ;;
    esac
    door_pid[$door]=$!; pids+=($!)
done
for door in $DOORS; do
    set_headers "$door"
    url="https://127.0.0.1:${port[$door]}/api/health"
    for _ in $(seq 100); do
        curl -sfk "${hdr[@]}" -o /dev/null "$url" && break
        sleep 0.1
    done
    curl -sfk "${hdr[@]}" -o /dev/null "$url" \
        || { echo "not answering: $door $url" >&2; cat "$work"/nginx/*-error.log "$work/haproxy-error.log" >&2 2>/dev/null; exit 1; }
    curl -sfk "${hdr[@]}" -o /dev/null -F "file=@$root/examples/sample-orders.csv" "https://127.0.0.1:${port[$door]}/api/analyze" \
        || { echo "upload refused: $door" >&2; exit 1; }
    case $door in *-full)
        status=$(curl -sk -o /dev/null -w '%{http_code}' "$url")
        [ "$status" = 401 ] || { echo "$door answered $status without a token" >&2; exit 1; } ;;
    esac
done

# CPU ticks of a door's processes (the process and its children):
# "user+system system".
cpu_ticks() {
    local pid=$1 total=0 system=0 p
    for p in $pid $(pgrep -P "$pid" || true); do
        # Fields 14 and 15 after the command name (which may hold spaces).
        read -r u k < <(sed 's/^.*) //' "/proc/$p/stat" | awk '{ print $12, $13 }')
        total=$((total + u + k))
        system=$((system + k))
    done
    echo "$total $system"
}

# One measurement → "requests seconds p50_ms p99_ms".
run_client() {
    local scenario=$1 url=$2 door=$3
    set_headers "$door"
    case $scenario in
        get|post)
            local script=()
            [ "$scenario" = post ] && { script=(-s "$work/post.lua"); url=${url%/api/health}/api/analyze; }
            wrk -t2 -c64 -d"${DURATION}s" --latency "${hdr[@]}" "${script[@]}" "$url" | awk -v d="$DURATION" '
                function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
                /^ +50%/ { p50 = ms($2) }
                /^ +99%/ { p99 = ms($2) }
                / requests in / { n = $1 }
                /Non-2xx/ { bad = $NF }
                /Socket errors/ { print "wrk: " $0 > "/dev/stderr" }
                END { if (bad) { print "non-2xx answers: " bad > "/dev/stderr"; exit 1 } printf "%d %s %.3f %.3f\n", n, d, p50, p99 }' ;;
        h2)
            rm -f "$work/h2load.log"
            h2load -t2 -c16 -m4 -D "$DURATION" --warm-up-time=1 "${hdr[@]}" \
                --log-file="$work/h2load.log" "$url" >"$work/h2load.out"
            grep -q '0 4xx, 0 5xx' "$work/h2load.out" || { cat "$work/h2load.out" >&2; exit 1; }
            python3 - "$work/h2load.log" "$DURATION" <<'PY'
import sys
times = sorted(int(line.split("\t")[2]) for line in open(sys.argv[1]) if line.split("\t")[1] == "200")
pick = lambda q: times[min(len(times) - 1, int(len(times) * q))] / 1000
print(len(times), sys.argv[2], f"{pick(0.5):.3f}", f"{pick(0.99):.3f}")
PY
            ;;
        resumed|full)
            local flags=()
            [ "$scenario" = full ] && flags=(--full)
            read -r n p50 p99 resumed errors < <("$connect_bin" --addr "127.0.0.1:${port[$door]}" --ca "$work/cert.pem" \
                --connections 16 --seconds "$DURATION" "${chdr[@]}" "${flags[@]}")
            [ "$errors" = 0 ] || echo "$door $scenario: $errors failed connections" >&2
            echo "$resumed" >>"$work/resumed-$scenario-$door"
            echo "$n $DURATION $p50 $p99" ;;
    esac
}

results=$work/results.tsv
printf "%-6s %-9s %-11s %9s %8s %8s %8s %8s\n" round scenario door req/s p50_ms p99_ms cpu_us/req sys_us/req >&2
for round in $(seq "$ROUNDS"); do
    # Rotate the order of the doors each round so none always goes first.
    read -r -a order <<<"$DOORS"
    shift_by=$(( (round - 1) % ${#order[@]} ))
    order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
    for scenario in $SCENARIOS; do
        for door in "${order[@]}"; do
            read -r before before_sys < <(cpu_ticks "${door_pid[$door]}")
            read -r n seconds p50 p99 < <(run_client "$scenario" "https://127.0.0.1:${port[$door]}/api/health" "$door")
            read -r after after_sys < <(cpu_ticks "${door_pid[$door]}")
            line=$(python3 -c "import os,sys; n,s,a,b,t,k=map(float,sys.argv[1:]); tck=os.sysconf('SC_CLK_TCK'); print(f'{n/s:.0f}\t{a}\t{b}\t{t*1e6/tck/n:.1f}\t{k*1e6/tck/n:.1f}')" \
                "$n" "$seconds" "$p50" "$p99" "$((after - before))" "$((after_sys - before_sys))")
            printf "%s\t%s\t%s\t%s\n" "$round" "$scenario" "$door" "$line" >>"$results"
            printf "%-6s %-9s %-11s %9s %8s %8s %8s %8s\n" "$round" "$scenario" "$door" $line >&2
        done
    done
done

echo
echo "gateway vs nginx/HAProxy: $ROUNDS rounds x ${DURATION} s, medians; $(uptime | sed 's/^.*load/load/'); $(nproc) cores; commit $(cd "$root" && git rev-parse --short HEAD)"
python3 "$root/benches/gateway-vs-nginx/table.py" "$results" "$REFERENCE" "$work"
