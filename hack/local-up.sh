#!/usr/bin/env bash
# Runs alumiini against a local control plane: etcd and kube-apiserver built
# from the module proxy, alumiini behind the aggregator, a git HTTP server with
# an example repository, and the example GitRepository applied.
#
#   hack/local-up.sh            foreground; Ctrl-C stops everything
#   hack/local-up.sh --detach   returns once ready; hack/local-down.sh stops it
#
# State lives in ${ALUMIINI_DEV_DIR:-_output/local}; ports are fixed defaults,
# each overridable (ALUMIINI_DEV_KUBE_PORT, ALUMIINI_DEV_PORT,
# ALUMIINI_DEV_ETCD_PORT, ALUMIINI_DEV_ETCD_PEER_PORT, ALUMIINI_DEV_GIT_PORT).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
DIR="${ALUMIINI_DEV_DIR:-_output/local}"
detach=false
for arg in "$@"; do
  case "${arg}" in
    --detach) detach=true ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "local-up: unknown argument ${arg}" >&2; exit 2 ;;
  esac
done

hack/ensure-deps.sh
TOOLS="$(hack/build-tools.sh)"
mkdir -p _output/bin "${DIR}"
CGO_ENABLED=0 go build -o _output/bin/alumiini ./cmd/alumiini # static, as the image is
go build -o _output/bin/localup ./hack/localup

run=(_output/bin/localup --dir "${DIR}" --tools "${TOOLS}" --alumiini _output/bin/alumiini)
if ! ${detach}; then
  exec "${run[@]}"
fi

log="${DIR}/local-up.log"
rm -f "${DIR}/ready"
setsid "${run[@]}" >"${log}" 2>&1 </dev/null &
pid=$!
while [[ ! -f "${DIR}/ready" ]]; do
  if ! kill -0 "${pid}" 2>/dev/null; then
    cat "${log}" >&2
    exit 1
  fi
  sleep 0.5
done
sed -n '/^alumiini is up/,$p' "${log}"
echo "(detached as pid ${pid}; its log is ${log})"
