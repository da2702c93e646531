#!/usr/bin/env bash
# Proves the README's `make dev` works on this machine as it is: brings the
# local control plane up (the same hack/local-up.sh, detached), waits through
# the real kubectl for the example GitRepository to sync, and stops it again.
# .ci/run runs it from an empty Go module cache in a fresh clone. It uses
# make dev's ports, so it cannot run beside a running make dev.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
export ALUMIINI_DEV_DIR="${ALUMIINI_DEV_DIR:-_output/dev-smoke}"
rm -rf "${ALUMIINI_DEV_DIR}"
trap 'hack/local-down.sh' EXIT

hack/local-up.sh --detach
# shellcheck disable=SC1091
. "${ALUMIINI_DEV_DIR}/env"
if ! kubectl wait gitrepository/example --for=jsonpath='{.status.phase}'=Synced --timeout=120s; then
  kubectl get gitrepository example -o yaml || true
  tail -n 40 "${ALUMIINI_DEV_DIR}/logs/alumiini.log" >&2 || true
  exit 1
fi
kubectl get gitrepositories
# The example repository's ConfigMap is in the cluster: the sync really applied.
kubectl get configmap greeting --namespace example
