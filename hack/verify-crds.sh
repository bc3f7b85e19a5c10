#!/usr/bin/env bash
# Fails when tests/crds differs from what hack/crds.sh generates now.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
"${REPO_ROOT}/hack/crds.sh" "${tmp}"
if ! diff -r "${REPO_ROOT}/tests/crds" "${tmp}" >"${tmp}.diff"; then
  head -n 50 "${tmp}.diff" >&2
  rm -f "${tmp}.diff"
  die "tests/crds is stale: run 'make crds' and commit the result"
fi
rm -f "${tmp}.diff"
log "tests/crds is up to date"
