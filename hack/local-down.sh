#!/usr/bin/env bash
# Stops a local control plane started with hack/local-up.sh --detach.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${ALUMIINI_DEV_DIR:-${ROOT}/_output/local}"
pid_file="${DIR}/local-up.pid"
if [[ ! -f "${pid_file}" ]]; then
  echo "local-down: nothing runs with state in ${DIR}"
  exit 0
fi
pid="$(cat "${pid_file}")"
if ! kill -0 "${pid}" 2>/dev/null; then
  echo "local-down: the run (pid ${pid}) is gone; the next local-up cleans up after it"
  exit 0
fi
kill -TERM "${pid}"
for _ in $(seq 1 120); do
  kill -0 "${pid}" 2>/dev/null || { echo "local-down: stopped"; exit 0; }
  sleep 0.5
done
echo "local-down: pid ${pid} did not stop within a minute" >&2
exit 1
