#!/usr/bin/env bash
# The gateway's production build: whole-program optimisation (the
# `production` profile of Cargo.toml: fat LTO, one code unit) guided by a
# profile of its own request path (profile-guided optimisation, PGO). It is
# built once instrumented, driven through the five scenarios of
# benches/gateway-vs-nginx.sh with the open and the full policy, then built
# again from what that run recorded. The compiler then lays out and inlines
# the code the way requests actually run it: about 30 % fewer instructions
# and 35 % fewer instruction-cache misses per request than the plain release
# build (docs/benchmarks.md, "Where the rest went"). Same source, same checks; only the machine code
# differs. The tests run against the plain build (scripts/test.sh).
#
#   scripts/build-pgo.sh                 # prints target/pgo/production/tradehabit-gateway
#   PGO_DIR=/tmp/pgo scripts/build-pgo.sh
#
# Needs: the Rust toolchain's llvm-tools component (added here with rustup
# when missing) and the benchmark's tools: nginx, haproxy, wrk, h2load
# (Debian: apt-get install -y nginx haproxy wrk nghttp2-client), openssl,
# python3, curl. The training run listens on 127.0.0.1 only (ports from
# BASE_PORT, as the benchmark) and takes about two minutes; each of the two
# builds about seven on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dir=${PGO_DIR:-$root/target/pgo}
profiles=$dir/profiles

host=$(rustc -vV | awk '/^host:/ { print $2 }')
profdata=$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata
if [ ! -x "$profdata" ] && command -v rustup >/dev/null; then
    rustup component add llvm-tools >&2
fi
[ -x "$profdata" ] || { echo "missing: $profdata (rustup component add llvm-tools)" >&2; exit 1; }

rm -rf "$profiles"
mkdir -p "$profiles"
echo "1/3: the instrumented build" >&2
CARGO_TARGET_DIR=$dir/generate RUSTFLAGS="-Cprofile-generate=$profiles" \
    cargo build --profile production --locked -q -p tradehabit-gateway
cargo build --release --locked -q -p tradehabit-bench-connect

echo "2/3: training on the benchmark's scenarios (open and full policy)" >&2
GATEWAY_BIN=$dir/generate/production/tradehabit-gateway \
    CONNECT_BIN=${CARGO_TARGET_DIR:-$root/target}/release/bench-connect \
    DOORS="gateway gw-full" benches/gateway-vs-nginx.sh --quick >"$dir/training.log" 2>&1 || {
    echo "the training run failed; the end of $dir/training.log:" >&2
    tail -n 30 "$dir/training.log" >&2
    exit 1
}
# Each instrumented process writes its counts when it exits.
compgen -G "$profiles/*.profraw" >/dev/null || { echo "the training run left no profile" >&2; exit 1; }
"$profdata" merge -o "$profiles/merged.profdata" "$profiles"/*.profraw

echo "3/3: the optimised build" >&2
CARGO_TARGET_DIR=$dir RUSTFLAGS="-Cprofile-use=$profiles/merged.profdata" \
    cargo build --profile production --locked -q -p tradehabit-gateway
echo "$dir/production/tradehabit-gateway"
