#!/usr/bin/env bash
# TLS scan: starts the gateway on 127.0.0.1 with a fresh self-signed
# certificate (its upstream socket need not exist: the scan only needs the
# TLS handshake and an HTTP answer, and a 502 carries the same security
# headers), runs Debian's testssl.sh against it, and asserts
#   * SSLv2, SSLv3, TLS 1.0 and TLS 1.1 not offered; TLS 1.2 and 1.3 offered;
#   * no NULL, anonymous, export, LOW, 3DES/IDEA or CBC-only ("average") ciphers;
#   * HSTS present.
# Usage: benches/tls-scan.sh [PORT]   (default 18443). Exit 0 = all pass.
# The summary goes to stdout and target/tls-scan/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${1:-18443}"
out="${CARGO_TARGET_DIR:-target}/tls-scan"
mkdir -p "$out"
work="$(mktemp -d)"
gateway_pid=""
cleanup() {
    if [ -n "$gateway_pid" ]; then kill "$gateway_pid" 2>/dev/null || true; wait "$gateway_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

command -v testssl >/dev/null || { echo "testssl (Debian package testssl.sh) is not installed" >&2; exit 2; }
cargo build -q -p tradehabit-gateway
bin="${CARGO_TARGET_DIR:-target}/debug/tradehabit-gateway"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat > "$work/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:$port"

[tls]
cert = "$work/cert.pem"
key = "$work/key.pem"

[upstream]
address = "unix:$work/absent.sock"

[[routes]]
name = "root"
path = "/"
methods = ["GET"]
TOML
"$bin" run --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
gateway_pid=$!
for _ in $(seq 100); do
    if openssl s_client -connect "127.0.0.1:$port" -brief </dev/null >/dev/null 2>&1; then break; fi
    sleep 0.1
done

rm -f "$out/testssl.json" "$out/testssl.txt"
testssl --quiet --color 0 --warnings off --ip 127.0.0.1 -p -s -h \
    --jsonfile "$out/testssl.json" "https://localhost:$port/" >"$out/testssl.txt" 2>&1 || true

python3 - "$out/testssl.json" "$out/summary.txt" <<'PY'
import json, sys
findings = {f["id"]: f for f in json.load(open(sys.argv[1]))}
def finding(i):
    return findings.get(i, {}).get("finding", "(missing)")
checks = [
    ("SSLv2 not offered", "not offered" in finding("SSLv2")),
    ("SSLv3 not offered", "not offered" in finding("SSLv3")),
    ("TLS 1.0 not offered", "not offered" in finding("TLS1")),
    ("TLS 1.1 not offered", "not offered" in finding("TLS1_1")),
    ("TLS 1.2 offered", finding("TLS1_2").startswith("offered")),
    ("TLS 1.3 offered", finding("TLS1_3").startswith("offered")),
]
for cipher_id in ["cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT",
                  "cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"]:
    if cipher_id in findings:
        checks.append((f"{cipher_id} not offered", finding(cipher_id).startswith("not offered")))
checks.append(("HSTS present, max-age >= 1 year",
               findings.get("HSTS_time", {}).get("severity") == "OK"))
checks.append(("HSTS includeSubDomains", finding("HSTS_subdomains") == "includes subdomains"))
lines = [f"{'PASS' if ok else 'FAIL'}  {name}" for name, ok in checks]
lines.append("")
lines += [f"{i}: {finding(i)}" for i in ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3",
                                          "HSTS_time", "HSTS_subdomains", "HSTS_preload",
                                          "cipherlist_AVERAGE", "cipherlist_STRONG"] if i in findings]
text = "\n".join(lines)
open(sys.argv[2], "w").write(text + "\n")
print(text)
sys.exit(0 if all(ok for _, ok in checks) else 1)
PY
