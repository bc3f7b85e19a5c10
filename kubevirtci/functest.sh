#!/usr/bin/env bash
# Runs the functional suite (tests/functional) against the kubevirtci cluster.
# Extra arguments go to ginkgo, e.g. kubevirtci/functest.sh --label-filter='!migration'
set -euo pipefail
# shellcheck source=kubevirtci/config.sh
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

kubevirtci::require_cluster
ginkgo="$("${REPO_ROOT}/hack/tools.sh" ginkgo)"
KUBECONFIG="$(kubevirtci::kubeconfig)" "${ginkgo}" -v --timeout=1h "$@" "${REPO_ROOT}/tests/functional" -- \
  --kubeconfig="$(kubevirtci::kubeconfig)"
