#!/usr/bin/env bash
# Builds the pinned kube-apiserver, kube-controller-manager and etcd that the
# integration suites and the demo run, from the Go module proxy, into
# bin/controlplane/<versions>_<hash>/, and prints that directory, ready for
# KUBEBUILDER_ASSETS. The hash covers everything the binaries are built from
# (the tool modules' go.mod and go.sum, build_once, the link flags, the Go
# version, the cgo setting), so a change to any of them lands in a new
# directory, and the others are removed once it is built; an existing
# directory is reused as is.
#
# What keeps a cold build short (it is most of a first `make demo`):
#   - hack/tools/controlplane requires the product's versions of every module
#     both compile (hack/controlplane-deps.sh keeps it so), and both are built
#     with CGO_ENABLED=0 like the Makefile's, so client-go, k8s.io/api and the
#     rest come out of the Go build cache instead of being compiled twice;
#   - the two Kubernetes commands are built by one `go build`, so their
#     compiles and links overlap;
#   - etcd (its own module, sharing little) builds alongside them and fills
#     the cores while they link;
#   - the binaries carry no symbol table or DWARF (-s -w): faster links and
#     smaller files; nobody debugs the test control plane;
#   - `hack/controlplane.sh --download` only fetches the modules, so `make demo`
#     runs it in the background while it compiles virtmesh.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export CGO_ENABLED="${CGO_ENABLED:-0}"

kube_mod="${REPO_ROOT}/hack/tools/controlplane"
etcd_mod="${REPO_ROOT}/hack/tools/etcd"
kube_version="$(module_version "${kube_mod}/go.mod" k8s.io/kubernetes)"
etcd_version="$(module_version "${etcd_mod}/go.mod" go.etcd.io/etcd/server/v3)"

case "${1:-}" in
  "") ;;
  --download)
    # Everything the two builds need (each module's tools.go imports the
    # commands), and nothing else is printed: the output is for callers.
    go -C "${kube_mod}" mod download
    go -C "${etcd_mod}" mod download
    exit 0
    ;;
  *) die "usage: $0 [--download]" ;;
esac

# Stamp the Kubernetes version so /version and version-skew checks see a real release.
minor="${kube_version#v1.}"; minor="${minor%%.*}"
kube_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${kube_version}"
kube_ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}"
kube_ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
etcd_ldflags="-s -w"

inputs_hash="$({
  cat "${kube_mod}/go.mod" "${kube_mod}/go.sum" "${etcd_mod}/go.mod" "${etcd_mod}/go.sum"
  declare -f build_once
  printf '%s\n' "${kube_ldflags}" "${etcd_ldflags}" "CGO_ENABLED=${CGO_ENABLED}"
  go env GOVERSION GOOS GOARCH GOAMD64 GOARM64 GOEXPERIMENT
} | git hash-object --stdin | cut -c1-10)"
dest="${BIN_DIR}/controlplane/kube-${kube_version}_etcd-${etcd_version}_${inputs_hash}"

build_once "${dest}" "${etcd_mod}" "${etcd_ldflags}" etcd=go.etcd.io/etcd/server/v3 &
etcd_build=$!
if ! build_once "${dest}" "${kube_mod}" "${kube_ldflags}" \
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
  kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager; then
  wait "${etcd_build}" || true
  die "building kube-apiserver and kube-controller-manager failed"
fi
wait "${etcd_build}" || die "building etcd failed"

# Binaries built from older inputs are never used again (~300 MB each).
for old in "${BIN_DIR}"/controlplane/*/; do
  old="${old%/}"
  if [ "${old}" != "${dest}" ]; then
    log "removing ${old#"${REPO_ROOT}"/} (built from older inputs)"
    rm -rf "${old}"
  fi
done
# envtest looks for kubectl beside the others only for its kubectl helper; the
# suites do not use it, so it is not built.
printf '%s\n' "${dest}"
