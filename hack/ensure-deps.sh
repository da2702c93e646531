#!/usr/bin/env bash
# Installs the machine packages the tests and `make dev` need, when missing:
# git (the local git server runs git http-backend).
set -euo pipefail
missing=()
command -v git >/dev/null || missing+=(git)
[[ -x "$(git --exec-path 2>/dev/null)/git-http-backend" ]] || missing+=(git)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
echo "installing ${missing[*]} with apt-get" >&2
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO=sudo
${SUDO} apt-get update -qq
${SUDO} apt-get install -y -qq "${missing[@]}" >/dev/null
