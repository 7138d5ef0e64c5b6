#!/bin/sh
# Builds the legacy Flask backend's image, tradehabit-legacy:local, from its
# source folder LEGACY_SRC, with this repository's deploy/legacy/Dockerfile.
#
#   LEGACY_SRC=/path/to/tradehabit-backend deploy/legacy/build.sh
#
# Compose cannot do this step itself portably: the Dockerfile lives here and
# the build context elsewhere (compose's `additional_contexts` would need
# compose >= 2.17 and is unknown to the validator run in CI).
set -eu

: "${LEGACY_SRC:?set LEGACY_SRC to the legacy backend checkout (the folder with app.py)}"
if [ ! -f "$LEGACY_SRC/app.py" ] || [ ! -f "$LEGACY_SRC/requirements.txt" ]; then
    echo "LEGACY_SRC=$LEGACY_SRC has no app.py/requirements.txt: not the legacy backend" >&2
    exit 1
fi

here="$(cd "$(dirname "$0")" && pwd)"
exec docker build -f "$here/Dockerfile" -t tradehabit-legacy:local "$LEGACY_SRC"
