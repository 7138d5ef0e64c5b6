#!/usr/bin/env bash
# System calls and context switches per request, counted by the kernel's
# tracepoints (perf): each front door of benches/gateway-vs-nginx.sh, with
# the same configurations and the same Unix-socket upstream, serving a fixed
# number of keep-alive GETs over HTTP/1.1 and HTTP/2 (h2load, as many
# connections as the CPU-time benchmark). A count, not a time: it shows the
# kernel work a door asks for per request (docs/benchmarks.md, "System calls
# per request"), which the CPU time only shows as a sum.
#
#   benches/syscalls.sh                                # gateway, floor, nginx, haproxy; h1 and h2
#   GATEWAY_BIN=/path/to/tradehabit-gateway benches/syscalls.sh
#   DOORS="gateway nginx" PROTOCOLS=h1 REQUESTS=100000 benches/syscalls.sh
#   PERF_RECORD=/tmp/profiles benches/syscalls.sh      # kernel + user profiles instead
#
# With PERF_RECORD, each door's processes are sampled (`perf record -g`)
# over the same requests instead of counted, into PERF_RECORD/DOOR-PROTO.data,
# and the share of samples under a few kernel entry points is printed (the
# audit file's `write`s among them; docs/benchmarks.md, "One clock read per
# poll"). Read a profile further with
# `perf report -i FILE --children --sort sym`.
#
# Needs: perf (Debian: linux-perf) with tracepoints readable (root, or
# kernel.perf_event_paranoid <= -1), nginx, haproxy, h2load, openssl,
# python3, curl, cargo. Listens on 127.0.0.1 only; everything is stopped on
# exit.
set -euo pipefail

DOORS=${DOORS:-gateway floor nginx haproxy}
PROTOCOLS=${PROTOCOLS:-h1 h2}
REQUESTS=${REQUESTS:-50000}
BASE_PORT=${BASE_PORT:-18640}

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
for tool in perf nginx haproxy h2load openssl python3 curl; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install -y linux-perf nginx haproxy nghttp2-client)" >&2; exit 1; }
done
perf stat -e raw_syscalls:sys_enter -o /dev/null true 2>/dev/null \
    || { echo "perf cannot read the syscall tracepoints here (run as root, or lower kernel.perf_event_paranoid)" >&2; exit 1; }
source "$root/benches/gateway-vs-nginx/configs.sh"
bench_binaries "$root" "$target"
bench_workdir

bench_upstream "$BASE_PORT"

declare -A door_pid
for door in $DOORS; do
    case $door in
        gateway) RUST_LOG=warn "$gateway_bin" run --config "$work/gateway.toml" & ;;
        floor) "$floor_bin" --listen "127.0.0.1:${port[floor]}" --cert "$work/cert.pem" \
                   --key "$work/key.pem" --upstream "$socket" & ;;
        nginx) nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' & ;;
        haproxy) haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy-access.log" 2>"$work/haproxy-error.log" & ;;
        *) echo "unknown door: $door (gateway, floor, nginx or haproxy)" >&2; exit 1 ;;
    esac
    door_pid[$door]=$!; pids+=($!)
done

# The rate matters: the audit line is written once per batch of about a
# millisecond, so its writes per request fall as the rate rises (and the
# tracepoints themselves slow every system call).
if [ -n "${PERF_RECORD:-}" ]; then
    printf '%-8s %-8s %9s %8s  %s\n' door protocol requests "req/s" "share of samples under each kernel entry point"
else
    printf '%-8s %-8s %9s %8s %9s %9s  %s\n' door protocol requests "req/s" syscalls switches "syscalls per request, the most frequent"
fi
for door in $DOORS; do
    url=https://127.0.0.1:${port[$door]}/api/health
    for _ in $(seq 100); do curl -skf -o /dev/null "$url" && break; sleep 0.1; done
    curl -skf -o /dev/null "$url" || { echo "not answering: $door" >&2; exit 1; }
    # The door's serving processes: nginx's workers, not its master.
    targets=${door_pid[$door]}
    children=$(pgrep -P "${door_pid[$door]}" | paste -sd, || true)
    [ -n "$children" ] && targets=$targets,$children
    for protocol in $PROTOCOLS; do
        case $protocol in
            h1) load=(--h1 -c64) ;;
            h2) load=(-c16 -m4) ;;
            *) echo "unknown protocol: $protocol (h1 or h2)" >&2; exit 1 ;;
        esac
        h2load -t2 "${load[@]}" -n 2000 "$url" >/dev/null   # warm-up: connections, pools, caches
        out=$work/$door-$protocol.csv
        if [ -n "${PERF_RECORD:-}" ]; then
            mkdir -p "$PERF_RECORD"
            profile=$PERF_RECORD/$door-$protocol.data
            perf record -q -g -F 4000 -o "$profile" -p "$targets" 2>/dev/null &
        else
            perf stat -x, -o "$out" -p "$targets" \
                -e raw_syscalls:sys_enter -e context-switches -e 'syscalls:sys_enter_*' &
        fi
        perf_pid=$!
        sleep 0.5
        h2load -t2 "${load[@]}" -n "$REQUESTS" "$url" >"$work/h2load.out"
        grep -q "$REQUESTS succeeded" "$work/h2load.out" || { cat "$work/h2load.out" >&2; exit 1; }
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        rate=$(awk '/^finished in/ { gsub(",", "", $4); print int($4) }' "$work/h2load.out")
        if [ -n "${PERF_RECORD:-}" ]; then
            # The share of all samples (user and kernel) whose stack passes
            # through each entry point.
            shares=$(perf report -i "$profile" --children -q --stdio -g none --sort sym 2>/dev/null \
                | awk '$3 == "[k]" && $4 ~ /^(ksys_write|do_writev|__sys_recvfrom|ksys_read|do_epoll_wait|schedule|ext4_buffered_write_iter)$/ { printf "%s %s, ", $4, $1 }')
            printf '%-8s %-8s %9s %8s  %s\n' "$door" "$protocol" "$REQUESTS" "$rate" "${shares%, }"
            continue
        fi
        python3 - "$out" "$door" "$protocol" "$REQUESTS" "$rate" <<'PY'
import sys
path, door, protocol, requests, rate = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
counts = {}
for line in open(path):
    fields = line.strip().split(",")
    if len(fields) > 2 and fields[0].isdigit():
        counts[fields[2]] = int(fields[0])
calls = {k.split("sys_enter_", 1)[1]: v for k, v in counts.items()
         if k.startswith("syscalls:sys_enter_") and v > 0}
top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
print(f"{door:<8} {protocol:<8} {requests:>9} {rate:>8} {counts.get('raw_syscalls:sys_enter', 0) / requests:>9.2f} "
      f"{counts.get('context-switches', 0) / requests:>9.2f}  "
      + ", ".join(f"{name} {n / requests:.2f}" for name, n in top))
PY
    done
done
