# aiwatch in a container: `serve` (dashboard, API, metrics on 8080) and, with a [gateway]
# table in the config, the failover gateway on 4000.
#
#   docker build -t aiwatch .
#   docker run -p 8080:8080 -v aiwatch-data:/var/lib/aiwatch -e OPENAI_API_KEY aiwatch
#
# compose.yaml runs it with the gateway.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --locked --profile dist -p aiwatch \
 && install -m 0755 target/dist/aiwatch /usr/local/bin/aiwatch

FROM debian:bookworm-slim
# ca-certificates: the system roots some corporate setups add to; curl: the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/aiwatch --create-home aiwatch
COPY --from=build /usr/local/bin/aiwatch /usr/local/bin/aiwatch
USER aiwatch
ENV XDG_DATA_HOME=/var/lib/aiwatch XDG_CONFIG_HOME=/etc
VOLUME ["/var/lib/aiwatch"]
EXPOSE 8080 4000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/aiwatch"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--db", "/var/lib/aiwatch/aiwatch.db"]
