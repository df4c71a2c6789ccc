# syntax=docker/dockerfile:1
# pglater container image.
#   docker build -t pglater .
#   docker run --rm -p 6432:6432 -v "$PWD/config.toml:/etc/pglater/config.toml:ro" pglater
# The build step is the same `cargo build --release --locked` that CI and the README use.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
    && install -D -m 0755 target/release/pglater /out/pglater
# Default config: the repository's example, listening on all interfaces inside the container.
RUN sed 's/^listen = .*/listen = "0.0.0.0:6432"/' config.toml > /out/config.toml \
    && grep -q '^listen = "0.0.0.0:6432"' /out/config.toml

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin pglater
COPY --from=build /out/pglater /usr/local/bin/pglater
COPY --from=build --chown=root:pglater --chmod=0640 /out/config.toml /etc/pglater/config.toml
USER pglater
EXPOSE 6432
ENTRYPOINT ["pglater", "--config", "/etc/pglater/config.toml"]
