#!/bin/sh
# Creates the gateway secrets for the compose stack in deploy/secrets/ (and
# the `scale` profile's upstream_hmac_key),
# 32 random bytes each, as hex. Existing files are left alone, so running it
# again never rotates a secret by accident (see docs/containers.md to rotate).
set -eu

dir="$(cd "$(dirname "$0")" && pwd)/secrets"
mkdir -p "$dir"
chmod 0700 "$dir"

for name in jwt_hs256_secret api_key_pepper audit_pseudonym_key upstream_hmac_key; do
    file="$dir/$name"
    if [ -e "$file" ]; then
        echo "kept    $file"
        continue
    fi
    # Written with a private umask first, then opened to the container's
    # uid (65532) through the file mode; the 0700 folder shields the host.
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$file" && echo >> "$file")
    chmod 0644 "$file"
    echo "created $file"
done
