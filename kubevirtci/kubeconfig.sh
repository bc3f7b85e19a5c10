#!/usr/bin/env bash
# Prints the kubevirtci cluster's kubeconfig path: export KUBECONFIG=$(kubevirtci/kubeconfig.sh)
set -euo pipefail
# shellcheck source=kubevirtci/config.sh
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

kubevirtci::require_cluster
kubevirtci::kubeconfig
