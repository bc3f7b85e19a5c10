#!/usr/bin/env bash
# Starts a kubevirtci cluster with Istio and Multus (CNAO), then deploys
# KubeVirt from its release manifests and waits until it is Available.
set -euo pipefail
# shellcheck source=kubevirtci/config.sh
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

kubevirtci::install
log "starting ${KUBEVIRT_PROVIDER} with ${KUBEVIRT_NUM_NODES} nodes, Istio=${KUBEVIRT_DEPLOY_ISTIO}, CNAO=${KUBEVIRT_WITH_CNAO}"
make -C "${KUBEVIRTCI_PATH}" cluster-up

release="https://github.com/kubevirt/kubevirt/releases/download/${KUBEVIRT_VERSION}"
log "deploying KubeVirt ${KUBEVIRT_VERSION}"
kubevirtci::kubectl apply -f "${release}/kubevirt-operator.yaml"
kubevirtci::kubectl apply -f "${release}/kubevirt-cr.yaml"
# Nested virtualization may be missing on CI machines: let KubeVirt emulate.
if ! grep -qE 'vmx|svm' /proc/cpuinfo; then
  log "no hardware virtualization here: enabling KubeVirt's software emulation"
  kubevirtci::kubectl -n kubevirt patch kubevirt kubevirt --type merge \
    -p '{"spec":{"configuration":{"developerConfiguration":{"useEmulation":true}}}}'
fi
log "waiting for KubeVirt to become Available"
kubevirtci::kubectl -n kubevirt wait kv kubevirt --for condition=Available --timeout=15m
log "cluster ready; KUBECONFIG=$(kubevirtci::kubeconfig)"
