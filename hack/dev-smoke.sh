#!/usr/bin/env bash
# Proves the README's `make dev` works on this machine as it is: brings the
# local control plane up (the same hack/local-up.sh, detached), waits through
# the real kubectl for the example GitRepository to sync, and stops it again.
# .ci/run runs it from an empty Go module cache and no _output/local.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
export ALUMIINI_DEV_DIR="${ALUMIINI_DEV_DIR:-_output/dev-smoke}"
rm -rf "${ALUMIINI_DEV_DIR}"
trap 'hack/local-down.sh' EXIT

hack/local-up.sh --detach
# shellcheck disable=SC1091
. "${ALUMIINI_DEV_DIR}/env"
kubectl wait gitrepository/example --for=jsonpath='{.status.phase}'=Synced --timeout=120s
kubectl get gitrepositories
kubectl get configmaps --namespace example
