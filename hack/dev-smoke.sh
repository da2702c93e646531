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

# Then the README's own commands for make dev, as a reader would type them
# (blocks marked "make dev-smoke runs"), in a scratch directory.
readme_blocks="$(awk '/<!-- make dev-smoke runs/ {marked=1; next}
  marked && /^```sh$/ {inside=1; next}
  inside && /^```$/ {inside=0; marked=0; next}
  inside {print}' README.md)"
if [[ -z "${readme_blocks}" ]]; then
  echo "dev-smoke: found no README block to run" >&2
  exit 1
fi
dev_dir="$(cd "${ALUMIINI_DEV_DIR}" && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "${scratch}"; hack/local-down.sh' EXIT
(
  cd "${scratch}"
  export GIT_AUTHOR_NAME=dev-smoke GIT_AUTHOR_EMAIL=dev-smoke@example.com
  export GIT_COMMITTER_NAME=dev-smoke GIT_COMMITTER_EMAIL=dev-smoke@example.com
  # Not set -x: sourcing the env file would print its webhook secret.
  printf 'dev-smoke: running the README'"'"'s commands:\n%s\n' "${readme_blocks}"
  eval "${readme_blocks//_output\/local\//${dev_dir}/}"
  echo
  message="$(kubectl get configmap greeting -n example -o jsonpath='{.data.message}')"
  if [[ "${message}" != "hello again" ]]; then
    echo "dev-smoke: after the README's push the ConfigMap says ${message@Q}, not 'hello again'" >&2
    exit 1
  fi
)
