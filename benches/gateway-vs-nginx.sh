#!/usr/bin/env bash
# Keep-alive HTTPS GET throughput and latency: the gateway vs nginx doing the
# same job (TLS 1.3, the same security headers, proxy to the same Unix-socket
# upstream), plus the upstream on its own. Runs alternate within one run.
# A second gateway, "gw-full", runs the full policy on the same route: a
# bearer JWT (HS256) verified with issuer, audience, expiry and a scope,
# per-IP and per-principal rate limits (quotas high enough never to refuse),
# CORS for the request's Origin, and the audit line; its cost is reported
# against the bare gateway.
#
#   benches/gateway-vs-nginx.sh            # defaults: 3 rounds x 10 s, 2 threads, 50 connections
#   ROUNDS=5 DURATION=20s CONNECTIONS=100 benches/gateway-vs-nginx.sh
#   NGINX_ACCESS_LOG=off benches/gateway-vs-nginx.sh   # nginx without its log line
#   GATEWAY_BIN=/path/to/tradehabit-gateway benches/gateway-vs-nginx.sh  # no build
#
# Needs: nginx and wrk (Debian: apt-get install -y nginx wrk), openssl, cargo.
# Everything listens on 127.0.0.1 only and is stopped on exit.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-50}
GATEWAY_PORT=${GATEWAY_PORT:-18443}
NGINX_PORT=${NGINX_PORT:-19443}
FULL_PORT=${FULL_PORT:-18444}
UPSTREAM_PORT=${UPSTREAM_PORT:-18081}
PATH_UNDER_TEST=/api/health

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d)
chmod 0711 "$work"   # nginx workers (an unprivileged user) must reach the socket
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

for tool in nginx wrk openssl cargo python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install -y nginx wrk python3)" >&2; exit 1; }
done

if [ -n "${GATEWAY_BIN:-}" ]; then
    gateway_bin=$GATEWAY_BIN   # another build, e.g. of an earlier commit
else
    echo "building the gateway (release)…" >&2
    (cd "$root" && cargo build --release -q -p tradehabit-gateway)
    gateway_bin=$target/release/tradehabit-gateway
fi

# One self-signed ECDSA P-256 certificate for both front doors.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

socket=$work/upstream.sock
mkdir -p "$work/nginx"

# The upstream: a small fixed JSON answer from nginx on a Unix socket (and
# on a TCP port, to measure it directly). Both front doors proxy to it.
cat >"$work/nginx/upstream.conf" <<EOF
worker_processes 1;
pid $work/nginx/upstream.pid;
error_log $work/nginx/upstream-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    keepalive_requests 1000000;
    server {
        listen unix:$socket;
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / {
            default_type application/json;
            return 200 '{"Status":"fine"}\n';
        }
    }
}
EOF

# nginx as the front door: the same job as the gateway, including one log
# line per request (the gateway's audit line), unless NGINX_ACCESS_LOG=off.
if [ "${NGINX_ACCESS_LOG:-on}" = off ]; then
    nginx_access_log="access_log off;"
else
    nginx_access_log="access_log $work/nginx/access.log;"
fi
cat >"$work/nginx/front.conf" <<EOF
worker_processes auto;
pid $work/nginx/front.pid;
error_log $work/nginx/front-error.log warn;
events { worker_connections 4096; }
http {
    $nginx_access_log
    server_tokens off;
    keepalive_requests 1000000;
    upstream app { server unix:$socket; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT ssl http2;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location = $PATH_UNDER_TEST {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Request-Id \$request_id;
            proxy_set_header Accept-Encoding identity;
            proxy_hide_header Server;
            proxy_hide_header X-Powered-By;
            proxy_hide_header Strict-Transport-Security;
            proxy_hide_header Cache-Control;
            add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;
            add_header X-Content-Type-Options nosniff always;
            add_header X-Frame-Options DENY always;
            add_header Referrer-Policy no-referrer always;
            add_header Content-Security-Policy "default-src 'none'; frame-ancestors 'none'" always;
            add_header Cache-Control no-store always;
            add_header X-Request-Id \$request_id always;
        }
        location / { return 404; }
    }
}
EOF

cat >"$work/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$GATEWAY_PORT"
[tls]
cert = "$work/cert.pem"
key = "$work/key.pem"
[limits]
max_connections_per_ip = 4096
[upstream]
address = "unix:$socket"
[admin]
listen = "127.0.0.1:0"
[audit]
output = "$work/audit.log"
[[routes]]
name = "health"
path = "$PATH_UNDER_TEST"
methods = ["GET"]
auth = "none"
EOF

# The full policy: the same route behind a JWT, a scope, two rate limiters
# and CORS, with the audit line.
head -c 48 /dev/urandom | base64 | tr -d '\n' >"$work/jwt_secret"
sed -e "s/127.0.0.1:$GATEWAY_PORT/127.0.0.1:$FULL_PORT/" -e "s#$work/audit.log#$work/audit-full.log#" \
    -e '/^auth = "none"$/d' "$work/gateway.toml" >"$work/gateway-full.toml"
cat >>"$work/gateway-full.toml" <<EOF
scopes = ["read"]
rate_limit = { per_ip = ["1000000/second"], per_principal = ["1000000/second"] }
[cors]
allowed_origins = ["https://app.tradehab.it"]
[[jwt.issuers]]
issuer = "https://bench.tradehabit.internal/"
audiences = ["tradehabit-api"]
algorithms = ["HS256"]
secret = { file = "$work/jwt_secret" }
EOF
token=$(python3 - "$work/jwt_secret" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret = open(sys.argv[1], "rb").read()
b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
now = int(time.time())
claims = {"iss": "https://bench.tradehabit.internal/", "aud": "tradehabit-api",
          "sub": "bench-trader", "scope": "read", "iat": now, "exp": now + 86400}
body = b64(json.dumps(claims).encode())
signature = b64(hmac.new(secret, head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + signature).decode())
PY
)
# Sent to every target (the others ignore them), so requests are the same size.
client_headers=(-H "Authorization: Bearer $token" -H "Origin: https://app.tradehab.it")

nginx -c "$work/nginx/upstream.conf" -g 'daemon off;' & pids+=($!)
nginx -c "$work/nginx/front.conf" -g 'daemon off;' & pids+=($!)
RUST_LOG=warn "$gateway_bin" run --config "$work/gateway.toml" & pids+=($!)
RUST_LOG=warn "$gateway_bin" run --config "$work/gateway-full.toml" & pids+=($!)

for url in "https://127.0.0.1:$GATEWAY_PORT$PATH_UNDER_TEST" "https://127.0.0.1:$FULL_PORT$PATH_UNDER_TEST" "https://127.0.0.1:$NGINX_PORT$PATH_UNDER_TEST" "http://127.0.0.1:$UPSTREAM_PORT$PATH_UNDER_TEST"; do
    for _ in $(seq 100); do
        curl -sfk "${client_headers[@]}" -o /dev/null "$url" && break
        sleep 0.1
    done
    curl -sfk "${client_headers[@]}" -o /dev/null "$url" || { echo "not answering: $url" >&2; cat "$work"/nginx/*-error.log >&2; exit 1; }
done
# The full policy really is enforced: no token, 401.
status=$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$FULL_PORT$PATH_UNDER_TEST")
[ "$status" = 401 ] || { echo "gw-full answered $status without a token" >&2; exit 1; }

# One wrk run → "rps p50_ms p99_ms".
measure() {
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${client_headers[@]}" "$1" | awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /^ +50%/ { p50 = ms($2) }
        /^ +99%/ { p99 = ms($2) }
        /^Requests\/sec/ { rps = $2 }
        /Non-2xx/ { bad = $NF }
        END { if (bad) { print "non-2xx answers: " bad > "/dev/stderr"; exit 1 } printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}

declare -A rps p50 p99
targets=(gateway gw-full nginx upstream)
for name in "${targets[@]}"; do rps[$name]=0; p50[$name]=0; p99[$name]=0; done
printf "%-6s %-9s %10s %9s %9s\n" round target req/s p50_ms p99_ms
for round in $(seq "$ROUNDS"); do
    for name in "${targets[@]}"; do
        case $name in
            gateway) url="https://127.0.0.1:$GATEWAY_PORT$PATH_UNDER_TEST" ;;
            gw-full) url="https://127.0.0.1:$FULL_PORT$PATH_UNDER_TEST" ;;
            nginx) url="https://127.0.0.1:$NGINX_PORT$PATH_UNDER_TEST" ;;
            upstream) url="http://127.0.0.1:$UPSTREAM_PORT$PATH_UNDER_TEST" ;;
        esac
        read -r r a b < <(measure "$url")
        printf "%-6s %-9s %10s %9s %9s\n" "$round" "$name" "$r" "$a" "$b"
        rps[$name]=$(echo "${rps[$name]} + $r" | bc -l)
        p50[$name]=$(echo "${p50[$name]} + $a" | bc -l)
        p99[$name]=$(echo "${p99[$name]} + $b" | bc -l)
    done
done

echo
echo "mean over $ROUNDS rounds ($THREADS threads, $CONNECTIONS connections, $DURATION each, TLS via wrk/OpenSSL, HTTP/1.1 keep-alive):"
printf "%-9s %10s %9s %9s\n" target req/s p50_ms p99_ms
for name in "${targets[@]}"; do
    printf "%-9s %10.0f %9.3f %9.3f\n" "$name" \
        "$(echo "${rps[$name]} / $ROUNDS" | bc -l)" \
        "$(echo "${p50[$name]} / $ROUNDS" | bc -l)" \
        "$(echo "${p99[$name]} / $ROUNDS" | bc -l)"
done
printf "gateway/nginx throughput ratio: %.2f\n" "$(echo "${rps[gateway]} / ${rps[nginx]}" | bc -l)"
printf "gateway/nginx p99 ratio:        %.2f\n" "$(echo "${p99[gateway]} / ${p99[nginx]}" | bc -l)"
printf "full policy cost (1 - gw-full/gateway throughput): %.1f %%\n" "$(echo "100 * (1 - ${rps[gw-full]} / ${rps[gateway]})" | bc -l)"
