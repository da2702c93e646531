#!/usr/bin/env bash
# Regenerates everything under pkg/generated and every zz_generated.*.go with
# k8s.io/code-generator at the version pinned in go.mod (see hack/tools.go).
set -o errexit
set -o nounset
set -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
# `go mod download -json` fetches the module when the cache lacks it (a
# fresh machine) and says where it is; `go list -m` alone would print an
# empty directory.
CODEGEN_PKG="$(go mod download -json k8s.io/code-generator | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ ! -f "${CODEGEN_PKG}/kube_codegen.sh" ]]; then
  echo "update-codegen: k8s.io/code-generator not found (module dir: '${CODEGEN_PKG}')" >&2
  exit 1
fi
THIS_PKG="github.com/falsesystems/alumiini"
BOILERPLATE="${ROOT}/hack/boilerplate.go.txt"

# kube_codegen.sh installs the generators with `go install`; keep them in our
# own cache so they match go.mod and do not land in the user's GOBIN.
export GOBIN="${ROOT}/_output/codegen-bin"
mkdir -p "${GOBIN}"

source "${CODEGEN_PKG}/kube_codegen.sh"

kube::codegen::gen_helpers \
  --boilerplate "${BOILERPLATE}" \
  "${ROOT}/pkg/apis"

# The known API-rule violations live in apimachinery's own types; the report
# keeps them visible without failing the run.
kube::codegen::gen_openapi \
  --output-dir "${ROOT}/pkg/generated/openapi" \
  --output-pkg "${THIS_PKG}/pkg/generated/openapi" \
  --report-filename "${ROOT}/hack/api-rule-violations.list" \
  --update-report \
  --output-model-name-file "zz_generated.model_name.go" \
  --boilerplate "${BOILERPLATE}" \
  "${ROOT}/pkg/apis"

kube::codegen::gen_client \
  --with-watch \
  --with-applyconfig \
  --applyconfig-openapi-schema <(go run "${THIS_PKG}/hack/models-schema") \
  --output-dir "${ROOT}/pkg/generated" \
  --output-pkg "${THIS_PKG}/pkg/generated" \
  --boilerplate "${BOILERPLATE}" \
  "${ROOT}/pkg/apis"
