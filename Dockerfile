# syntax=docker/dockerfile:1
# virtmesh manager image: a static, trimmed, version-stamped binary on
# distroless's nonroot base (uid 65532, no shell). Build with `make image`;
# `ko` (.ko.yaml) builds the same image without a Docker daemon.
ARG GO_VERSION=1.26
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
COPY webhook/ webhook/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X github.com/virtmesh/virtmesh/internal/version.Version=${VERSION}" \
      -o /out/virtmesh ./cmd/virtmesh

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.source="https://github.com/virtmesh/virtmesh" \
      org.opencontainers.image.title="virtmesh" \
      org.opencontainers.image.description="Makes KubeVirt VMs members of an Istio service mesh with no manual step"
COPY --from=build /out/virtmesh /virtmesh
USER 65532:65532
ENTRYPOINT ["/virtmesh"]
