#!/usr/bin/env bash
# Renders the install base (artifacts/deploy) into install.yaml, the one file
# `kubectl apply -f install.yaml` installs; with --verify, fails if the
# checked-in file differs from the base.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBECTL="$("${ROOT}/hack/build-tools.sh")/kubectl"
rendered="$(mktemp)"
trap 'rm -f "${rendered}"' EXIT
{
  echo "# Rendered from artifacts/deploy by hack/update-install-yaml.sh (make install-yaml); do not edit."
  "${KUBECTL}" kustomize "${ROOT}/artifacts/deploy"
} >"${rendered}"
if [[ "${1:-}" == "--verify" ]]; then
  if ! diff -u "${ROOT}/install.yaml" "${rendered}"; then
    echo "install.yaml is out of date with artifacts/deploy: run make install-yaml" >&2
    exit 1
  fi
  exit 0
fi
cp "${rendered}" "${ROOT}/install.yaml"
