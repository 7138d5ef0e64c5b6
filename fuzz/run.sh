#!/bin/sh
# Runs every fuzz target for SECONDS (default 60) from its seed corpus.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain the
# sanitizer flags need RUSTC_BOOTSTRAP=1.
set -eu
cd "$(dirname "$0")"
seconds="${1:-60}"
# The policy loader is seeded with the shipped example as it is now.
cp ../config/gateway.example.toml seeds/policy_file/gateway.example.toml
for target in csv_upload multipart policy_file path framing; do
    mkdir -p "corpus/$target"
    RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" \
        -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | tail -n 12 | tee "last-run-$target.log"
done
