#!/usr/bin/env bash
# kubectl against the kubevirtci cluster: kubevirtci/kubectl.sh get vmis -A
set -euo pipefail
# shellcheck source=kubevirtci/config.sh
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

kubevirtci::require_cluster
kubevirtci::kubectl "$@"
