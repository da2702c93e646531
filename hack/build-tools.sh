#!/usr/bin/env bash
# Builds the pinned control-plane tools (kube-apiserver, kube-controller-manager,
# etcd, kubectl) from the Go module proxy into _output/bin/<version>/, skipping
# any already built.
# Prebuilt release downloads are not reachable on our machines; the proxy is.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
BIN="${ROOT}/_output/bin/${KUBE_VERSION}"
mkdir -p "${BIN}"

major="${KUBE_VERSION#v}"; major="${major%%.*}"
minor="${KUBE_VERSION#v*.}"; minor="${minor%%.*}"
# kubectl refuses a server whose version string is the default placeholder,
# so stamp the real release into both version packages.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X ${pkg}.gitVersion=${KUBE_VERSION} -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
  ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
done

cd "${ROOT}/hack/tools"
for tool in etcd kubectl kube-apiserver kube-controller-manager; do
  if [[ -x "${BIN}/${tool}" ]]; then
    continue
  fi
  echo "building ${tool} ${KUBE_VERSION} (cached in ${BIN}; first build takes minutes)" >&2
  go build -trimpath -ldflags "${ldflags}" -o "${BIN}/${tool}.tmp" "./${tool}"
  mv "${BIN}/${tool}.tmp" "${BIN}/${tool}"
done
echo "${BIN}"
