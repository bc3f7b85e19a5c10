#!/usr/bin/env bash
# Stops and removes the kubevirtci cluster.
set -euo pipefail
# shellcheck source=kubevirtci/config.sh
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

if [ ! -d "${KUBEVIRTCI_CHECKOUT}" ]; then
  log "no kubevirtci checkout: nothing to stop"
  exit 0
fi
make -C "${KUBEVIRTCI_CHECKOUT}" cluster-down
