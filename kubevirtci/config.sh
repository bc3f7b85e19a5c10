#!/usr/bin/env bash
# Shared settings and helpers of the kubevirtci dev loop. Sourced by the other
# scripts in this folder; every setting can be overridden from the environment.
#
# Bumping kubevirtci: pick a tag from https://github.com/kubevirt/kubevirtci/tags
# (or `curl -sL https://storage.googleapis.com/kubevirt-prow/release/kubevirt/kubevirtci/latest`),
# set KUBEVIRTCI_TAG below, check that its cluster-up/cluster/ folder still has
# KUBEVIRT_PROVIDER (kubevirtci keeps only its three newest providers; up.sh
# checks it too), run `make cluster-down cluster-up functest`, commit.

# 2608061417-09424f6f was read (cluster-up/cluster/) to have the providers
# k8s-1.34, k8s-1.35 and k8s-1.36, and deploys Istio 1.30.2 (multus mode with
# CNAO: the shared default/istio-cni).
export KUBEVIRTCI_TAG="${KUBEVIRTCI_TAG:-2608061417-09424f6f}"
export KUBEVIRTCI_REPO="${KUBEVIRTCI_REPO:-https://github.com/kubevirt/kubevirtci.git}"
# Kubernetes 1.35+: its ImageVolume is on, as KubeVirt v1.9's ImageVolume gate
# expects for containerDisks (up.sh disables the gate on older providers).
export KUBEVIRT_PROVIDER="${KUBEVIRT_PROVIDER:-k8s-1.35}"
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
    # Every tag on the checked-out commit: describe would print only one of
    # them, maybe another, and a needless re-clone deletes the running
    # cluster's kubeconfig.
    tag="$(git -C "${KUBEVIRTCI_CHECKOUT}" tag --points-at HEAD 2>/dev/null || true)"
    if [ "${repo}" = "${KUBEVIRTCI_REPO}" ] && printf '%s\n' "${tag}" | grep -qxF "${KUBEVIRTCI_TAG}"; then
      return 0
    fi
    tag="$(printf '%s' "${tag}" | tr '\n' ' ')"
    log "kubevirtci checkout is ${repo}@${tag}, want ${KUBEVIRTCI_REPO}@${KUBEVIRTCI_TAG}: replacing it"
    rm -rf "${KUBEVIRTCI_CHECKOUT}"
  fi
  log "cloning kubevirtci ${KUBEVIRTCI_TAG} into ${KUBEVIRTCI_CHECKOUT}"
  git clone --quiet "${KUBEVIRTCI_REPO}" "${KUBEVIRTCI_CHECKOUT}"
  git -C "${KUBEVIRTCI_CHECKOUT}" checkout --quiet "${KUBEVIRTCI_TAG}"
}

# kubevirtci::require_provider fails unless the checkout has KUBEVIRT_PROVIDER:
# kubevirtci's own up.sh exits 0 without starting anything when it is missing.
kubevirtci::require_provider() {
  local provider="${KUBEVIRTCI_CHECKOUT}/cluster-up/cluster/${KUBEVIRT_PROVIDER}/provider.sh"
  if [ ! -f "${provider}" ]; then
    local have
    have="$(cd "${KUBEVIRTCI_CHECKOUT}/cluster-up/cluster" && find . -mindepth 2 -maxdepth 2 -name provider.sh -printf '%h\n' 2>/dev/null |
      sed 's|^\./||' | sort | tr '\n' ' ' | sed 's/ $//')"
    die "kubevirtci ${KUBEVIRTCI_TAG} has no provider ${KUBEVIRT_PROVIDER} (no ${provider#"${KUBEVIRTCI_CHECKOUT}/"}); it has: ${have:-none}. Set KUBEVIRT_PROVIDER to one of them, or bump KUBEVIRTCI_TAG in kubevirtci/config.sh"
  fi
}

# kubevirtci::k8s_minor prints the Kubernetes minor version of KUBEVIRT_PROVIDER
# (k8s-1.34 -> 34), or nothing for a provider named otherwise.
kubevirtci::k8s_minor() {
  local v="${KUBEVIRT_PROVIDER#k8s-1.}"
  [ "${v}" != "${KUBEVIRT_PROVIDER}" ] || return 1
  v="${v%%[!0-9]*}"
  [ -n "${v}" ] && printf '%s\n' "${v}"
}

# kubevirtci::oci_bin prints the container engine to build and push with:
# OCI_BIN if set, else podman when its socket answers (as kubevirtci itself
# prefers it), else docker.
kubevirtci::oci_bin() {
  if [ -n "${OCI_BIN:-}" ]; then
    printf '%s\n' "${OCI_BIN}"
  elif command -v podman >/dev/null 2>&1 && podman ps >/dev/null 2>&1; then
    printf 'podman\n'
  else
    printf 'docker\n'
  fi
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
