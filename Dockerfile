# syntax=docker/dockerfile:1
#
# Images for the gateway and the worker, from one build stage:
#
#   docker build --target gateway -t tradehabit-gateway:local .
#   docker build --target worker  -t tradehabit-worker:local  .
#
# (compose.yaml does the same.) Both run on distroless "cc" (glibc, libgcc,
# CA certificates, tzdata, an /etc/passwd with the `nonroot` user; no shell,
# no package manager) as uid/gid 65532, with nothing of ours but the binary.
# Not built in CI: there is no container engine there (docs/containers.md).

# Match the workspace toolchain (rust-version in Cargo.toml is the minimum).
# bookworm = Debian 12, the same glibc as distroless cc-debian12.
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# --- build ------------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The whole workspace: cargo needs every member's manifest. .dockerignore
# keeps target/, .git/ and deploy/secrets/ out of the build context.
COPY . .
# Cache mounts keep the registry and target dir between builds; the binaries
# are copied out in the same step because the cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tradehabit-gateway -p tradehabit-worker \
 && install -D -m 0755 target/release/tradehabit-gateway /out/tradehabit-gateway \
 && install -D -m 0755 target/release/tradehabit-worker /out/tradehabit-worker \
 && install -d -m 0750 /out/run/tradehabit \
 && install -d -m 0750 /out/var/lib/tradehabit \
 && install -d -m 0700 /out/var/lib/tradehabit/tls

# --- worker -----------------------------------------------------------------
# No network, no disk: it only needs the directory that will hold its socket
# (compose mounts the socket volume, shared with the gateway, over it).
# Copying the parent folder's contents makes /run/tradehabit itself a copied
# entry, so --chown applies to it (a folder COPY only creates as its
# destination may stay root's).
FROM ${RUNTIME_IMAGE} AS worker
COPY --from=build --chown=65532:65532 /out/run/ /run/
COPY --from=build /out/tradehabit-worker /tradehabit-worker
USER 65532:65532
ENTRYPOINT ["/tradehabit-worker"]
CMD ["--socket", "/run/tradehabit/worker.sock"]

# --- gateway ----------------------------------------------------------------
# /var/lib/tradehabit/tls is where a development certificate is generated on
# first start when none is mounted (mount a volume there: the root
# filesystem is read-only in compose; Docker initialises an empty named
# volume from this folder, owner 65532 and mode 0700 included).
FROM ${RUNTIME_IMAGE} AS gateway
COPY --from=build --chown=65532:65532 /out/run/ /run/
COPY --from=build --chown=65532:65532 /out/var/lib/ /var/lib/
COPY --from=build /out/tradehabit-gateway /tradehabit-gateway
USER 65532:65532
# 8443 HTTPS, 8080 plain HTTP (redirects/refusals only). The admin listener
# (9901: /metrics, /healthz, /readyz) is deliberately not exposed.
EXPOSE 8443 8080
# Exec form: the image has no shell and no curl. The subcommand probes the
# admin listener's /readyz (default http://127.0.0.1:9901/readyz).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["/tradehabit-gateway", "healthcheck"]
ENTRYPOINT ["/tradehabit-gateway"]
CMD ["run", "--config", "/etc/tradehabit/gateway.toml"]
