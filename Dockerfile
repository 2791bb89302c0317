# syntax=docker/dockerfile:1
#
# maru: multi-stage build. The runtime image holds only the binary, the reference web app's
# static files (built by the `web` stage from web/ and proto/), CA certificates and curl (for
# the HEALTHCHECK), and runs as an unprivileged user.
#
#   docker build -t maru:local .
#   docker run --rm -p 50051:50051 -p 9464:9464 \
#     -e MARU__DATABASE__URL=postgres://... -e MARU__AUTH__JWT_KEY=... maru:local
#   # the web app: http://127.0.0.1:50051/app/
#
# A second target, `traffic`, is the scripted-traffic generator of the compose `load`
# profile (monitoring/traffic.sh with grpcurl and curl).

ARG RUST_VERSION=1
ARG NODE_VERSION=22

# The reference web app (web/): npm ci from the lockfile, then `npm run build` — buf generate
# (buf and protoc-gen-es are npm devDependencies) from proto/ into web/gen, tsc, esbuild into
# web/dist. Only Node is needed; the bundle is the same on any platform.
FROM node:${NODE_VERSION}-bookworm-slim AS web
WORKDIR /src
COPY buf.gen.yaml ./
COPY proto/ proto/
COPY web/package.json web/package-lock.json web/
RUN --mount=type=cache,target=/root/.npm,sharing=locked \
    cd web && npm ci --no-audit --no-fund --loglevel=error
COPY web/ web/
RUN cd web && npm run build

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# protoc comes from the protoc-bin-vendored crate; nothing else is needed from apt.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin maru \
 && install -m 0755 target/release/maru /usr/local/bin/maru

FROM golang:1.22-bookworm AS grpcurl
RUN CGO_ENABLED=0 go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.1

FROM debian:bookworm-slim AS traffic
RUN apt-get update \
 && apt-get install -y --no-install-recommends bash ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10002 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin traffic
COPY --from=grpcurl /go/bin/grpcurl /usr/local/bin/grpcurl
COPY monitoring/traffic.sh /usr/local/bin/traffic.sh
USER 10002:10002
ENTRYPOINT ["/usr/local/bin/traffic.sh"]

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin maru \
 && install -d -o 10001 -g 10001 /var/lib/maru/media
COPY --from=builder /usr/local/bin/maru /usr/local/bin/maru
# The web app, served under /app/ on the gRPC port (web.enabled is on by default).
COPY --from=web /src/web/dist/ /usr/share/maru/web/
USER 10001:10001
# Inside a container the listeners must not be loopback-only.
ENV MARU__GRPC__LISTEN=0.0.0.0:50051 \
    MARU__ADMIN__LISTEN=0.0.0.0:9464 \
    MARU__MEDIA__DATA_DIR=/var/lib/maru/media \
    MARU__WEB__DIR=/usr/share/maru/web
# The local media backend's files (mount a volume here, or use the S3 backend, to keep them).
VOLUME /var/lib/maru/media
EXPOSE 50051 9464
# /readyz is 200 once the database is reachable and migrated, 503 before and while draining.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${MARU__ADMIN__LISTEN##*:}/readyz" || exit 1
ENTRYPOINT ["maru"]
CMD ["serve"]
