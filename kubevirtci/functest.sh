#!/usr/bin/env bash
# Runs the functional suite (tests/functional) against the kubevirtci cluster.
# Extra arguments go to ginkgo, e.g. kubevirtci/functest.sh --label-filter='!migration'
set -euo pipefail
# shellcheck source=kubevirtci/config.sh
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

kubevirtci::require_cluster
ginkgo="$("${REPO_ROOT}/hack/tools.sh" ginkgo)"
labels="$("${ginkgo}" labels "${REPO_ROOT}/tests/functional" 2>/dev/null | sed -n 's/^[^:]*: //p' | tr -d '[]"' | tr ',' ' ' || true)"
log "Ginkgo labels of the suite: ${labels:-?}"
log "run a subset with e.g. make functest FUNCTEST_ARGS=\"--label-filter='existing && !migration'\" (or kubevirtci/functest.sh --label-filter=...); --focus='\\[16\\]' runs one spec"
KUBECONFIG="$(kubevirtci::kubeconfig)" "${ginkgo}" -v --timeout=1h "$@" "${REPO_ROOT}/tests/functional" -- \
  --kubeconfig="$(kubevirtci::kubeconfig)"
