# syntax=docker/dockerfile:1
# The control plane's container image: `edgemock` on distroless (glibc, CA roots, no shell),
# running as an unprivileged user. Build from the repository root:
#   docker build -t edgemock-control-plane --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
# Dependencies are compiled in their own layer (cargo-chef), rebuilt only when Cargo.toml or
# Cargo.lock change. The `server` profile is the release profile at opt-level 3
# (Cargo.toml; the release profile itself is sized for the Worker's WASM).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The dependency graph only: changes to our own sources do not invalidate the next stage.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --profile server --package edgemock-control-plane --recipe-path recipe.json
COPY . .
RUN cargo build --profile server --locked --package edgemock-control-plane --bin edgemock \
    && install -D -m 0755 target/server/edgemock /out/usr/local/bin/edgemock \
    && install -d -m 0750 /out/var/lib/edgemock

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="edgemock control plane" \
      org.opencontainers.image.description="Admin API, publisher and native mock runtime of edgemock" \
      org.opencontainers.image.source="https://github.com/edgemock/edgemock" \
      org.opencontainers.image.url="https://github.com/edgemock/edgemock" \
      org.opencontainers.image.documentation="https://github.com/edgemock/edgemock/blob/main/docs/runbook.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="edgemock" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=builder /out/usr/local/bin/edgemock /usr/local/bin/edgemock
# The working directory: a SQLite database (the default DATABASE_URL) lands here when no
# PostgreSQL is configured, e.g. `docker run -v edgemock:/var/lib/edgemock …`.
COPY --from=builder --chown=10001:10001 /out/var/lib/edgemock /var/lib/edgemock
WORKDIR /var/lib/edgemock
# The same unprivileged user as the Kubernetes manifests (runAsUser 10001).
USER 10001:10001
ENV HOST=0.0.0.0 \
    PORT=3000 \
    LOG_FORMAT=json
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/edgemock", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/edgemock"]
CMD ["serve"]
