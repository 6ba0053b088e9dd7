# syntax=docker/dockerfile:1
#
# The ratemesh node as a container image: a static binary on distroless
# (no shell, no package manager), running as a non-root user.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t ratemesh:dev .
#   docker run --rm -p 8081:8081 -e RATEMESH_SECRET=... ratemesh:dev
#
# Ports (the node's defaults; docs/kubernetes.md and docs/running.md):
#   8081/tcp       HTTP API: /v1/check, /healthz, /readyz, /metrics, the demo
#   7946/tcp+udp   gossip between the nodes (memberlist)
#   9091/tcp       RPC between the nodes (forwarded checks, handoff)
#   8089/tcp       gRPC Envoy rate limit service, only with --rls-config

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first: they change less often than the code, so the layer caches.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/ratemesh-node ./cmd/node && mkdir /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="ratemesh" \
      org.opencontainers.image.description="Distributed rate limiter: a cluster of equal peers" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/ratemesh-node /usr/local/bin/ratemesh-node
# In a container the node listens on every interface of its own network
# namespace and advertises the first non-loopback address (in Kubernetes,
# set RATEMESH_ADVERTISE from the pod IP). Counters are kept in the data
# directory; mount a volume there to keep them across restarts.
ENV RATEMESH_BIND=0.0.0.0 \
    RATEMESH_DATA_DIR=/var/lib/ratemesh \
    RATEMESH_DEMO=false
# distroless's nonroot user (65532); the directory is its own.
COPY --from=build --chown=65532:65532 /out/data /var/lib/ratemesh
USER 65532:65532
EXPOSE 8081/tcp 7946/tcp 7946/udp 9091/tcp 8089/tcp
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/ratemesh-node", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/ratemesh-node"]
