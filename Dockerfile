# syntax=docker/dockerfile:1
# The stampede binary in a slim image. Build: docker build -t stampede .
# (Not built on the project's own machines, which have no Docker daemon; a test checks that
# the build command below is the one CI runs.)

FROM rust:1.95-bookworm AS build
WORKDIR /src
# 1. Dependencies only: this layer is rebuilt when a manifest or the lock file changes, not
#    when the code does. Every crate gets an empty body for now.
COPY Cargo.toml Cargo.lock ./
COPY crates/cache/Cargo.toml crates/cache/
COPY crates/catalog/Cargo.toml crates/catalog/
COPY crates/coupons/Cargo.toml crates/coupons/
COPY crates/db/Cargo.toml crates/db/
COPY crates/eventbus/Cargo.toml crates/eventbus/
COPY crates/events/Cargo.toml crates/events/
COPY crates/loadkit/Cargo.toml crates/loadkit/
COPY crates/orders/Cargo.toml crates/orders/
COPY crates/points/Cargo.toml crates/points/
COPY crates/ranking/Cargo.toml crates/ranking/
COPY crates/server/Cargo.toml crates/server/
COPY crates/testkit/Cargo.toml crates/testkit/
RUN for crate in crates/*; do mkdir -p "$crate/src" && touch "$crate/src/lib.rs"; done \
 && echo 'fn main() {}' > crates/server/src/main.rs \
 && mkdir -p crates/server/benches crates/eventbus/benches \
 && for bench in charge coupons memory orders ranking; do echo 'fn main() {}' > "crates/server/benches/$bench.rs"; done \
 && echo 'fn main() {}' > crates/eventbus/benches/bus.rs \
 && cargo build --release --locked -p server --bin stampede
# 2. The code.
COPY crates crates
RUN find crates -name '*.rs' -exec touch {} + \
 && cargo build --release --locked -p server --bin stampede

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/stampede --create-home stampede
COPY --from=build /src/target/release/stampede /usr/local/bin/stampede
USER stampede
WORKDIR /var/lib/stampede
ENV STAMPEDE_BIND=0.0.0.0:8080 \
    STAMPEDE_DATA_DIR=/var/lib/stampede
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/health/live || exit 1
ENTRYPOINT ["stampede"]
CMD ["serve"]
