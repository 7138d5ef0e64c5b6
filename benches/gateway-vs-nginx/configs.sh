# Sourced by benches/gateway-vs-nginx.sh, benches/instructions.sh and
# benches/syscalls.sh (the last two also take their gateway and floor
# binaries from here): the work directory, the port table, and the certificate, the upstream's and every front door's
# configuration written into $work. Uses $work, $socket, $token and the
# port table ${port[door]}.

# bench_binaries ROOT TARGET: $gateway_bin and $floor_bin, from
# GATEWAY_BIN and FLOOR_BIN, or the release builds under TARGET (built from
# ROOT when either is not given).
bench_binaries() {
    local root=$1 target=$2
    if [ -z "${GATEWAY_BIN:-}" ] || [ -z "${FLOOR_BIN:-}" ]; then
        echo "building the gateway and the floor (release)…" >&2
        (cd "$root" && cargo build --release -q -p tradehabit-gateway -p tradehabit-bench-floor)
    fi
    gateway_bin=${GATEWAY_BIN:-$target/release/tradehabit-gateway}
    floor_bin=${FLOOR_BIN:-$target/release/bench-floor}
}

# bench_workdir: $work, a fresh directory removed on exit, and $pids, the
# processes stopped on exit.
bench_workdir() {
    work=$(mktemp -d)
    chmod 0711 "$work"   # nginx workers (an unprivileged user) must reach the socket
    pids=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}

# bench_upstream BASE: the port table from BASE, the bearer token (HS256,
# one day), every configuration, and the upstream started on $socket.
bench_upstream() {
    port_table "$1"
    socket=$work/upstream.sock
    token=$(python3 "$(dirname "${BASH_SOURCE[0]}")/token.py" "$work/jwt_secret")
    write_configs
    nginx -c "$work/nginx/upstream.conf" -g 'daemon off;' & pids+=($!)
}

# port_table BASE: each front door's port, from BASE up.
port_table() {
    local base=$1
    declare -gA port=([gateway]=$base [gw-full]=$((base + 1)) [nginx]=$((base + 2))
                      [nginx-full]=$((base + 3)) [haproxy]=$((base + 4)) [gw-base]=$((base + 5))
                      [floor]=$((base + 6)))
}

write_configs() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -addext "basicConstraints=critical,CA:FALSE" \
        -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
    cat "$work/cert.pem" "$work/key.pem" >"$work/combined.pem"
    mkdir -p "$work/nginx"
    upstream_conf
    gateway_toml gateway no
    gateway_toml gw-full yes
    gateway_toml gw-base no
    nginx_conf nginx no
    nginx_conf nginx-full yes
    haproxy_cfg
}

# The upstream: a small fixed JSON answer from nginx on a Unix socket, for
# any method and path (an upload's body is read and discarded).
upstream_conf() {
    cat >"$work/nginx/upstream.conf" <<EOF
worker_processes 1;
pid $work/nginx/upstream.pid;
error_log $work/nginx/upstream-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    keepalive_requests 1000000;
    client_max_body_size 4m;
    client_body_buffer_size 256k;
    server {
        listen unix:$socket;
        location / {
            default_type application/json;
            return 200 '{"Status":"fine"}\n';
        }
    }
}
EOF
}

# The gateway: /api/health (GET) and /api/analyze (POST, 2 MiB + framing).
# Full: JWT with a scope, two rate limiters that never refuse, CORS, and the
# multipart check on the upload route.
gateway_toml() {
    local door=$1 full=$2 policy
    if [ "$full" = yes ]; then
        policy='scopes = ["read"]
rate_limit = { per_ip = ["1000000/second"], per_principal = ["1000000/second"] }'
    else
        policy='auth = "none"'
    fi
    cat >"$work/$door.toml" <<EOF
[server]
listen = "127.0.0.1:${port[$door]}"
[tls]
cert = "$work/cert.pem"
key = "$work/key.pem"
[limits]
max_connections_per_ip = 4096
max_requests_per_ip = 4096
max_upstream_per_ip = 256
[upstream]
address = "unix:$socket"
[admin]
listen = "127.0.0.1:0"
[audit]
output = "$work/audit-$door.log"
[[routes]]
name = "health"
path = "/api/health"
methods = ["GET"]
$policy
[[routes]]
name = "analyze"
path = "/api/analyze"
methods = ["POST"]
body_limit = 2162688
$policy
EOF
    if [ "$full" = yes ]; then
        cat >>"$work/$door.toml" <<EOF
upload = { field = "file", extensions = [".csv"], max_file_bytes = 2097152 }
[cors]
allowed_origins = ["https://app.tradehab.it"]
[[jwt.issuers]]
issuer = "https://bench.tradehabit.internal/"
audiences = ["tradehabit-api"]
algorithms = ["HS256"]
secret = { file = "$work/jwt_secret" }
EOF
    fi
}

# nginx doing the same job; full: the closest it gets to the gateway's
# policy (the bearer token through a `map`, two `limit_req` zones, the CORS
# allowlist through a `map`).
nginx_conf() {
    local door=$1 full=$2 http_extra="" location_extra="" cors=""
    if [ "$full" = yes ]; then
        http_extra="
    map_hash_bucket_size 1024;
    map \$http_authorization \$principal { default \"\"; \"Bearer $token\" \"bench-trader\"; }
    map \$http_origin \$cors_origin { default \"\"; \"https://app.tradehab.it\" \$http_origin; }
    limit_req_zone \$binary_remote_addr zone=per_ip:10m rate=1000000r/s;
    limit_req_zone \$principal zone=per_key:10m rate=1000000r/s;"
        location_extra="
            if (\$principal = \"\") { return 401; }
            limit_req zone=per_ip burst=100000 nodelay;
            limit_req zone=per_key burst=100000 nodelay;
            proxy_set_header X-TradeHabit-Principal \$principal;"
        cors="
            add_header Access-Control-Allow-Origin \$cors_origin always;
            add_header Vary Origin always;
            add_header Access-Control-Expose-Headers \"Retry-After, RateLimit, RateLimit-Policy, X-Request-Id\" always;"
    fi
    local common="
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
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
            add_header Strict-Transport-Security \"max-age=63072000; includeSubDomains\" always;
            add_header X-Content-Type-Options nosniff always;
            add_header X-Frame-Options DENY always;
            add_header Referrer-Policy no-referrer always;
            add_header Content-Security-Policy \"default-src 'none'; frame-ancestors 'none'\" always;
            add_header Cache-Control no-store always;
            add_header X-Request-Id \$request_id always;$cors$location_extra"
    cat >"$work/nginx/$door.conf" <<EOF
worker_processes auto;
pid $work/nginx/$door.pid;
error_log $work/nginx/$door-error.log warn;
events { worker_connections 4096; }
http {
    log_format bench escape=json '{"time":"\$time_iso8601","id":"\$request_id","client":"\$remote_addr","method":"\$request_method","path":"\$uri","status":\$status,"bytes_in":\$request_length,"bytes_out":\$bytes_sent,"duration":\$request_time,"upstream":"\$upstream_response_time"}';
    access_log $work/nginx/$door-access.log bench buffer=64k flush=1s;
    server_tokens off;
    keepalive_requests 1000000;
    ssl_session_cache shared:SSL:10m;
    upstream app { server unix:$socket; keepalive 64; }$http_extra
    server {
        listen 127.0.0.1:${port[$door]} ssl http2;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /api/health {$common
        }
        location = /api/analyze {
            client_max_body_size 2112k;
            client_body_buffer_size 128k;$common
        }
        location / { return 404; }
    }
}
EOF
}

# HAProxy as close to the same job as it allows: no policy, the headers, a
# request id, a JSON log line to stdout (a file).
haproxy_cfg() {
    cat >"$work/haproxy.cfg" <<EOF
global
    nbthread $(nproc)
    log stdout format raw local0
    tune.ssl.cachesize 20000
defaults
    mode http
    log global
    log-format '{"time":"%t","id":"%ID","client":"%ci","method":"%HM","path":"%HP","status":%ST,"bytes_in":%U,"bytes_out":%B,"duration":%Ta}'
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
frontend front
    bind 127.0.0.1:${port[haproxy]} ssl crt $work/combined.pem alpn h2,http/1.1 ssl-min-ver TLSv1.2
    unique-id-format %{+X}o%ci:%cp_%fi:%fp_%Ts_%rt:%pid
    http-request return status 404 unless { path /api/health /api/analyze }
    http-request set-header X-Request-Id %[unique-id]
    http-request set-header X-Forwarded-For %[src]
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header Accept-Encoding identity
    http-response del-header Server
    http-response del-header X-Powered-By
    http-after-response set-header Strict-Transport-Security "max-age=63072000; includeSubDomains"
    http-after-response set-header X-Content-Type-Options nosniff
    http-after-response set-header X-Frame-Options DENY
    http-after-response set-header Referrer-Policy no-referrer
    http-after-response set-header Content-Security-Policy "default-src 'none'; frame-ancestors 'none'"
    http-after-response set-header Cache-Control no-store
    http-after-response set-header X-Request-Id %[unique-id]
    default_backend app
backend app
    server upstream $socket maxconn 256
EOF
}
