#!/usr/bin/env bash
# Shared settings and helpers of the kubevirtci dev loop. Sourced by the other
# scripts in this folder; every setting can be overridden from the environment.
#
# Bumping kubevirtci: pick a tag from https://github.com/kubevirt/kubevirtci/tags
# (or `curl -sL https://storage.googleapis.com/kubevirt-prow/release/kubevirt/kubevirtci/latest`),
# set KUBEVIRTCI_TAG below, check that its cluster-provision/k8s/ folder still
# has KUBEVIRT_PROVIDER, run `make cluster-down cluster-up functest`, commit.

export KUBEVIRTCI_TAG="${KUBEVIRTCI_TAG:-2609300856-4bec1cc7}"
export KUBEVIRTCI_REPO="${KUBEVIRTCI_REPO:-https://github.com/kubevirt/kubevirtci.git}"
export KUBEVIRT_PROVIDER="${KUBEVIRT_PROVIDER:-k8s-1.34}"
export KUBEVIRT_NUM_NODES="${KUBEVIRT_NUM_NODES:-2}"
export KUBEVIRT_MEMORY_SIZE="${KUBEVIRT_MEMORY_SIZE:-9216M}"
# Istio, and Multus with istio-cni chained under it (CNAO): the setting
# virtmesh's NetworkAttachmentDefinitions exist for.
export KUBEVIRT_DEPLOY_ISTIO="${KUBEVIRT_DEPLOY_ISTIO:-true}"
export KUBEVIRT_WITH_CNAO="${KUBEVIRT_WITH_CNAO:-true}"
# KubeVirt deployed on the cluster, from its release manifests.
export KUBEVIRT_VERSION="${KUBEVIRT_VERSION:-v1.9.0}"

KUBEVIRTCI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${KUBEVIRTCI_DIR}/.." && pwd)"
# The kubevirtci checkout (gitignored). Not named KUBEVIRTCI_PATH: kubevirtci's
# own scripts use that name for their cluster-up/ folder.
KUBEVIRTCI_CHECKOUT="${KUBEVIRTCI_CHECKOUT:-${KUBEVIRTCI_DIR}/_kubevirtci}"
# Where kubevirtci keeps the cluster's kubeconfig, the same from any directory.
export KUBEVIRTCI_CONFIG_PATH="${KUBEVIRTCI_CHECKOUT}/_ci-configs"
export REPO_ROOT

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# kubevirtci::install clones kubevirtci at KUBEVIRTCI_TAG, replacing a
# checkout of another tag or repository.
kubevirtci::install() {
  if [ -d "${KUBEVIRTCI_CHECKOUT}/.git" ]; then
    local repo tag
    repo="$(git -C "${KUBEVIRTCI_CHECKOUT}" remote get-url origin)"
    tag="$(git -C "${KUBEVIRTCI_CHECKOUT}" describe --tags 2>/dev/null || true)"
    if [ "${repo}" = "${KUBEVIRTCI_REPO}" ] && [ "${tag}" = "${KUBEVIRTCI_TAG}" ]; then
      return 0
    fi
    log "kubevirtci checkout is ${repo}@${tag}, want ${KUBEVIRTCI_REPO}@${KUBEVIRTCI_TAG}: replacing it"
    rm -rf "${KUBEVIRTCI_CHECKOUT}"
  fi
  log "cloning kubevirtci ${KUBEVIRTCI_TAG} into ${KUBEVIRTCI_CHECKOUT}"
  git clone --quiet "${KUBEVIRTCI_REPO}" "${KUBEVIRTCI_CHECKOUT}"
  git -C "${KUBEVIRTCI_CHECKOUT}" checkout --quiet "${KUBEVIRTCI_TAG}"
}

kubevirtci::kubeconfig() {
  printf '%s\n' "${KUBEVIRTCI_CONFIG_PATH}/${KUBEVIRT_PROVIDER}/.kubeconfig"
}

kubevirtci::kubectl() {
  "${KUBEVIRTCI_CHECKOUT}/cluster-up/kubectl.sh" "$@"
}

# kubevirtci::registry prints the host address of the cluster's registry;
# inside the cluster the same registry is registry:5000.
kubevirtci::registry() {
  printf 'localhost:%s\n' "$("${KUBEVIRTCI_CHECKOUT}/cluster-up/cli.sh" ports registry | tr -d '\r')"
}

kubevirtci::require_cluster() {
  [ -f "$(kubevirtci::kubeconfig)" ] || die "no kubevirtci cluster (${KUBEVIRT_PROVIDER}); run make cluster-up"
}
