# The two commands a newcomer needs: `make dev` and `make test`.
# Everything else here is what they are made of.
SHELL := /usr/bin/env bash
GO ?= go

.PHONY: all bench bench-latency image install-yaml verify-install-yaml build dev dev-down dev-smoke test verify verify-codegen codegen vet fmt-check tools unit integration e2e clean

all: build

# The version stamped into the binary (alumiini version, --version).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
VERSION_PKG := github.com/falsesystems/alumiini/pkg/version
LDFLAGS := -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Commit=$(COMMIT) -X $(VERSION_PKG).BuildDate=$(BUILD_DATE)

# Static, as the image is built (hack/image, the Dockerfile): with cgo,
# kustomize's import of the plugin package makes the linker export every
# symbol (test/localcluster.BuildAlumiini says more).
build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o _output/bin/alumiini ./cmd/alumiini

## dev: run alumiini against a local control plane with an example repository (Ctrl-C stops it)
dev:
	hack/local-up.sh

dev-down:
	hack/local-down.sh

## dev-smoke: make dev, detached, until its example syncs; then stop (CI runs it)
dev-smoke:
	hack/dev-smoke.sh

## test: codegen check, vet, unit, integration and end-to-end tests
test: verify tools
	$(GO) test -count=1 -timeout 20m ./...

verify: fmt-check vet verify-codegen verify-install-yaml

## image: build the container image as an OCI archive (_output/image/alumiini.oci.tar), no Docker engine needed
image:
	$(GO) run ./hack/image -version $(VERSION) -commit $(COMMIT) -created $(BUILD_DATE)

## install-yaml: render artifacts/deploy into install.yaml
install-yaml:
	hack/update-install-yaml.sh

verify-install-yaml:
	hack/update-install-yaml.sh --verify

verify-codegen:
	hack/verify-codegen.sh

codegen:
	hack/update-codegen.sh

vet:
	$(GO) vet ./...

fmt-check:
	@files="$$(gofmt -l cmd pkg test hack artifacts)"; if [[ -n "$$files" ]]; then echo "gofmt needed: $$files"; exit 1; fi

# kube-apiserver, etcd and kubectl, built once from the module proxy into _output/bin.
tools:
	hack/ensure-deps.sh
	hack/build-tools.sh >/dev/null

unit:
	$(GO) test ./pkg/... ./cmd/...

integration:
	$(GO) test ./test/integration/...

e2e: tools
	$(GO) test -count=1 ./test/e2e/...

clean:
	rm -rf _output

## bench: N GitRepositories next to kubectl apply: create to Ready, CPU, requests, memory, idle, push (not part of make test)
BENCH_N ?= 100,1000
BENCH_FLAGS ?=
bench: tools
	mkdir -p _output
	$(GO) run ./test/bench -n $(BENCH_N) -json _output/bench.json $(BENCH_FLAGS)

## bench-latency: time push → applied (webhook and sync request), drift correction and a 100-GitRepository fan-out (not part of make test)
BENCH_LATENCY_FLAGS ?=
bench-latency: tools
	$(GO) run ./test/bench/latency $(BENCH_LATENCY_FLAGS)
