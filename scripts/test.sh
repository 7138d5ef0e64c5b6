#!/usr/bin/env bash
# Runs every test of the workspace: unit, parity, end-to-end and operations
# checks. A few tests drive real external tools (promtool from Debian's
# `prometheus` package, `docker-compose` for compose-file validation,
# `openssl` for TLS-version probes, headless `chromium` for the real-browser
# tests (CORS, the web app with cookie sessions), `redis-server` for the shared
# rate-limit store tests, `cargo-deny` for the dependency
# policy, Python 3 with openapi-spec-validator, jsonschema, requests and gunicorn for
# the OpenAPI, scripting and legacy-backend tests); this script installs the missing ones
# when it can (root or passwordless sudo with apt-get) and otherwise says
# what to install. Those tests fail, not skip, when their tool is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# The compose `scale` profile's balancer configuration (tests/ops_compose_scale.rs).
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
# The shared rate-limit store tests start their own redis-server.
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# Python 3 and pip for the OpenAPI and scripting tests (modules below).
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-pip)

if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    echo "installing test tools: ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The Debian packages start daemons on install; the tests need none of them.
    for svc in prometheus prometheus-node-exporter haproxy redis-server; do
      $sudo service "$svc" stop >/dev/null 2>&1 || true
    done
  else
    echo "missing test tools: ${need[*]} (install them with your package manager)" >&2
  fi
fi

# The OpenAPI and scripting tests (tests/tests/openapi.rs, scripting.rs)
# run Python 3 with openapi-spec-validator, jsonschema and requests; the
# gateway's legacy-backend test (gateway/tests/e2e/gunicorn.rs) runs gunicorn.
command -v python3 >/dev/null 2>&1 || need_python=1
if [ -z "${need_python:-}" ] && ! python3 -c 'import openapi_spec_validator, jsonschema, requests, gunicorn' >/dev/null 2>&1; then
  modules="openapi-spec-validator jsonschema requests gunicorn"
  echo "installing Python test modules: $modules"
  # A distribution's own Python refuses plain `pip install` (PEP 668).
  python3 -m pip install --quiet $modules ||
    python3 -m pip install --quiet --break-system-packages $modules ||
    echo "could not install the Python test modules (pip install $modules)" >&2
fi
[ -z "${need_python:-}" ] || echo "missing python3: install Python 3 (the OpenAPI and scripting tests fail without it)" >&2

# The dependency policy test runs cargo-deny (deny.toml).
if ! cargo deny --version >/dev/null 2>&1; then
  echo "installing cargo-deny (a few minutes, once)"
  cargo install --locked --quiet cargo-deny@0.20.2
fi

exec cargo test --workspace --locked "$@"
