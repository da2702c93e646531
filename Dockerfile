# alumiini in a container: one static binary on a minimal base.
FROM golang:1.26 AS build
ARG VERSION=unknown
ARG COMMIT=unknown
ARG BUILD_DATE=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd cmd
COPY pkg pkg
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w \
      -X github.com/falsesystems/alumiini/pkg/version.Version=${VERSION} \
      -X github.com/falsesystems/alumiini/pkg/version.Commit=${COMMIT} \
      -X github.com/falsesystems/alumiini/pkg/version.BuildDate=${BUILD_DATE}" \
    -o /alumiini ./cmd/alumiini

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=unknown
ARG COMMIT=unknown
ARG BUILD_DATE=unknown
LABEL org.opencontainers.image.title=alumiini \
      org.opencontainers.image.version=${VERSION} \
      org.opencontainers.image.revision=${COMMIT} \
      org.opencontainers.image.created=${BUILD_DATE} \
      org.opencontainers.image.source=https://github.com/falsesystems/alumiini \
      org.opencontainers.image.licenses=Apache-2.0
COPY --from=build /alumiini /alumiini
USER 65532:65532
# The embedded etcd keeps its data here; mount a volume to keep it across restarts.
VOLUME /var/lib/alumiini
ENTRYPOINT ["/alumiini"]
