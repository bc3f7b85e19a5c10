#!/usr/bin/env bash
# Starts a kubevirtci cluster with Istio and Multus (CNAO), then deploys
# KubeVirt from its release manifests and waits until it is Available.
set -euo pipefail
# shellcheck source=kubevirtci/config.sh
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

kubevirtci::install
kubevirtci::require_provider
log "starting ${KUBEVIRT_PROVIDER} with ${KUBEVIRT_NUM_NODES} nodes, Istio=${KUBEVIRT_DEPLOY_ISTIO}, CNAO=${KUBEVIRT_WITH_CNAO}"
make -C "${KUBEVIRTCI_CHECKOUT}" cluster-up

release="https://github.com/kubevirt/kubevirt/releases/download/${KUBEVIRT_VERSION}"
log "deploying KubeVirt ${KUBEVIRT_VERSION}"
kubevirtci::kubectl apply -f "${release}/kubevirt-operator.yaml"
kubevirtci::kubectl wait crd/kubevirts.kubevirt.io --for condition=Established --timeout=2m
kubevirtci::kubectl apply -f "${release}/kubevirt-cr.yaml"
# KubeVirt v1.9 turns its ImageVolume gate on by default, but Kubernetes'
# ImageVolume is off before 1.35: containerDisk VMs would not start. KubeVirt's
# own CI disables the gate there.
minor="$(kubevirtci::k8s_minor || true)"
if [ -n "${minor}" ] && [ "${minor}" -lt 35 ]; then
  log "Kubernetes 1.${minor} (before 1.35): disabling KubeVirt's ImageVolume feature gate"
  kubevirtci::kubectl -n kubevirt patch kubevirt kubevirt --type merge \
    -p '{"spec":{"configuration":{"developerConfiguration":{"disabledFeatureGates":["ImageVolume"]}}}}'
fi
# kubevirtci's nodes are VMs: their VMs need nested virtualization on this
# host. Without it, let KubeVirt emulate.
nested_kvm() {
  local f
  for f in /sys/module/kvm_intel/parameters/nested /sys/module/kvm_amd/parameters/nested; do
    if [ -r "${f}" ] && grep -qE '^(Y|1)$' "${f}"; then
      return 0
    fi
  done
  return 1
}
if ! nested_kvm; then
  log "no nested virtualization on this host: enabling KubeVirt's software emulation"
  kubevirtci::kubectl -n kubevirt patch kubevirt kubevirt --type merge \
    -p '{"spec":{"configuration":{"developerConfiguration":{"useEmulation":true}}}}'
fi
log "waiting for KubeVirt to become Available"
kubevirtci::kubectl -n kubevirt wait kv kubevirt --for condition=Available --timeout=15m
log "cluster ready; KUBECONFIG=$(kubevirtci::kubeconfig)"
