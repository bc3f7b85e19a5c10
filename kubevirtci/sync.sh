#!/usr/bin/env bash
# Builds the virtmesh image, pushes it to the cluster's registry, deploys the
# default overlay with that image and waits for the rollout.
#   IMAGE_BUILDER=docker|ko (default docker: the Dockerfile, built with
#   OCI_BIN, detected as podman when its socket answers, else docker)
set -euo pipefail
# shellcheck source=kubevirtci/config.sh
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

kubevirtci::require_cluster
tag="devel-$(date +%s)"
registry="$(kubevirtci::registry)"
log "building and pushing ${registry}/virtmesh:${tag}"
case "${IMAGE_BUILDER:-docker}" in
  ko)
    # ko reads .ko.yaml from, and resolves ./cmd/virtmesh against, the current directory.
    (cd "${REPO_ROOT}" && KO_DOCKER_REPO="${registry}/virtmesh" VERSION="${tag}" \
      "$(hack/tools.sh ko)" build --bare --insecure-registry --tags "${tag}" --platform "linux/$(go env GOARCH)" ./cmd/virtmesh)
    ;;
  docker)
    # "docker" means the Dockerfile, built by docker or podman (OCI_BIN).
    oci="$(kubevirtci::oci_bin)"
    push_flags=()
    # kubevirtci's registry speaks plain HTTP; docker trusts localhost, podman
    # must be told.
    [ "${oci}" = podman ] && push_flags+=(--tls-verify=false)
    "${oci}" build --build-arg VERSION="${tag}" -t "${registry}/virtmesh:${tag}" "${REPO_ROOT}"
    "${oci}" push "${push_flags[@]}" "${registry}/virtmesh:${tag}"
    ;;
  *) die "IMAGE_BUILDER must be docker (the Dockerfile, with docker or podman) or ko" ;;
esac

# The default overlay, with the image as the nodes see the registry. Kustomize
# takes only relative paths, so the overlay lives in the (gitignored) _out/.
overlay="${REPO_ROOT}/_out/cluster-sync"
mkdir -p "${overlay}"
cat > "${overlay}/kustomization.yaml" <<KUSTOMIZATION
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../manifests/default
images:
  - name: ghcr.io/virtmesh/virtmesh
    newName: registry:5000/virtmesh
    newTag: ${tag}
KUSTOMIZATION
log "deploying manifests/default"
kubevirtci::kubectl apply -k "${overlay}"
kubevirtci::kubectl -n virtmesh-system rollout status deployment/virtmesh --timeout=5m
log "virtmesh ${tag} is running"
