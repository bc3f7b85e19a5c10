#!/usr/bin/env bash
# Builds the pinned kube-apiserver, kube-controller-manager and etcd that the
# integration suites run, from the Go module proxy, into bin/controlplane/<versions>/.
# A build is skipped when the pinned version is already there. Prints the
# directory, ready for KUBEBUILDER_ASSETS.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kube_mod="${REPO_ROOT}/hack/tools/controlplane"
etcd_mod="${REPO_ROOT}/hack/tools/etcd"
kube_version="$(module_version "${kube_mod}/go.mod" k8s.io/kubernetes)"
etcd_version="$(module_version "${etcd_mod}/go.mod" go.etcd.io/etcd/server/v3)"
dest="${BIN_DIR}/controlplane/kube-${kube_version}_etcd-${etcd_version}"

# Stamp the Kubernetes version so /version and version-skew checks see a real release.
minor="${kube_version#v1.}"; minor="${minor%%.*}"
kube_ldflags="-X k8s.io/component-base/version.gitVersion=${kube_version}"
kube_ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}"
kube_ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"

build_once "${dest}/kube-apiserver" "${kube_mod}" k8s.io/kubernetes/cmd/kube-apiserver "${kube_ldflags}"
build_once "${dest}/kube-controller-manager" "${kube_mod}" k8s.io/kubernetes/cmd/kube-controller-manager "${kube_ldflags}"
build_once "${dest}/etcd" "${etcd_mod}" go.etcd.io/etcd/server/v3
# envtest looks for kubectl beside the others only for its kubectl helper; the
# suites do not use it, so it is not built.
printf '%s\n' "${dest}"
