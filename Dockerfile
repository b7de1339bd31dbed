# Eddy's server and shell in a small image. Build context: the repository (see .dockerignore).
#   docker build -t eddy .        (or `docker compose up -d`, which builds it)
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p eddy-server -p eddy-cli

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/eddy-server /src/target/release/eddy /usr/local/bin/
EXPOSE 8088
ENTRYPOINT ["eddy-server"]
