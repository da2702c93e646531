#!/usr/bin/env bash
# Fails when the generated code differs from what hack/update-codegen.sh writes.
# It regenerates into a copy of the tree, so the work tree is never touched.
set -o errexit
set -o nounset
set -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "${TMP}"' EXIT

# Copy the sources (not _output), keeping the generator cache warm by linking it.
tar -C "${ROOT}" --exclude=./_output --exclude=./.git -cf - . | tar -C "${TMP}" -xf -
mkdir -p "${ROOT}/_output/codegen-bin" "${TMP}/_output"
ln -s "${ROOT}/_output/codegen-bin" "${TMP}/_output/codegen-bin"

"${TMP}/hack/update-codegen.sh" >/dev/null

status=0
for dir in pkg hack/api-rule-violations.list; do
  if ! diff -Nru "${ROOT}/${dir}" "${TMP}/${dir}" >"${TMP}/codegen.diff"; then
    cat "${TMP}/codegen.diff" | head -100
    echo "generated code in ${dir} is out of date: run hack/update-codegen.sh" >&2
    status=1
  fi
done
[[ ${status} -eq 0 ]] && echo "generated code is up to date"
exit ${status}
