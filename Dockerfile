# ckpt-migrate as a small container image (see deploy/kubernetes/ for an Indexed Job
# that runs one shard per pod).
#
# The build steps are the README's "Build a release binary" steps, unchanged:
#   scripts/setup.sh --sample
#   cargo build --profile dist --locked -p ckpt-migrate

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN scripts/setup.sh --sample \
 && cargo build --profile dist --locked -p ckpt-migrate \
 && cp target/dist/ckpt-migrate /ckpt-migrate

# The binary needs only the C library and CA certificates: SQLite is compiled in, TLS
# is rustls, the reference plugins are embedded.
FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --home-dir /work --create-home --shell /usr/sbin/nologin ckpt
COPY --from=build /ckpt-migrate /usr/local/bin/ckpt-migrate
USER 10001
# Resume state (`.ckpt-migrate/`), dead-letter files and the plugin compile cache are
# written under the working directory: mount a volume here to keep them.
WORKDIR /work
ENV HOME=/work
ENTRYPOINT ["ckpt-migrate"]
CMD ["--help"]
