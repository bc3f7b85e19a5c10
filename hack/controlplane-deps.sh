#!/usr/bin/env bash
# Aligns hack/tools/controlplane with the product: wherever kube-apiserver or
# kube-controller-manager compile a module that virtmesh compiles too, the
# control-plane module requires the product's version when it is newer, so
# that a first build compiles those packages (client-go, k8s.io/api, x/net,
# ...) once instead of twice; that is minutes of a cold `make demo` or CI run.
#
#   hack/controlplane-deps.sh           upgrade hack/tools/controlplane in place
#   hack/controlplane-deps.sh --check   fail if it is not aligned (make verify)
#
# Run it after bumping the product's dependencies. It only ever raises
# versions. It leaves alone what hack/tools/controlplane pins by `replace`
# (the k8s.io staging modules, always the Kubernetes release's own), and where
# Kubernetes needs a newer version than the product, Kubernetes' stays (those
# few packages then build twice). The trade-off: the test control plane is
# Kubernetes' own code built with the product's newer, compatible versions of
# shared libraries (as a Kubernetes patch release does when it bumps them),
# not byte for byte the release's.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The cgo setting changes which files, hence which imports, a build has.
export CGO_ENABLED="${CGO_ENABLED:-0}"

check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  *) die "usage: $0 [--check]" ;;
esac

cp_mod="${REPO_ROOT}/hack/tools/controlplane"
work="${cp_mod}"
if "${check}"; then
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' EXIT
  cp "${cp_mod}/go.mod" "${cp_mod}/go.sum" "${cp_mod}"/*.go "${work}/"
fi

# modules DIR PKG... prints "path version" for every module PKG... compile
# (replacements resolved), sorted for join.
modules() {
  local dir="$1" out; shift
  out="$(go -C "${dir}" list -deps -f \
    '{{with .Module}}{{.Path}} {{with .Replace}}{{.Version}}{{else}}{{.Version}}{{end}}{{end}}' "$@")" || return 1
  printf '%s\n' "${out}" | LC_ALL=C sort -u
}

# newer A B succeeds when Go module version A is newer than B. GNU sort -V with
# the pre-release hyphen turned into "~" (which sorts before anything, even the
# end) orders releases, pre-releases and pseudo-versions as semver does.
newer() {
  local a="${1#v}" b="${2#v}"
  a="${a/-/\~}" b="${b/-/\~}"
  [ "${a}" != "${b}" ] && [ "$(printf '%s\n%s\n' "${a}" "${b}" | sort -V | tail -n1)" = "${a}" ]
}

product="$(modules "${REPO_ROOT}" ./...)"
replaced="$(go -C "${work}" mod edit -json | awk -F'"' '/"Old":/ { old = 1 } old && /"Path":/ { print $4; old = 0 }' | LC_ALL=C sort -u)"

kube_minor="$(module_version "${cp_mod}/go.mod" k8s.io/kubernetes | cut -d. -f2)"
product_minor="$(awk '$1 == "k8s.io/apimachinery" { print $2 }' <<<"${product}" | cut -d. -f2)"
[ "${kube_minor}" = "${product_minor}" ] ||
  log "warning: the product builds k8s.io/* 0.${product_minor} but the control plane is Kubernetes 1.${kube_minor}: client-go and k8s.io/api cannot be shared until they match"

for _ in 1 2 3 4 5; do
  control_plane="$(modules "${work}" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)"
  edits=()
  while read -r path want have; do
    grep -qxF "${path}" <<<"${replaced}" && continue
    if newer "${want}" "${have}"; then
      edits+=("-require=${path}@${want}")
      log "${path}: ${have} -> ${want}"
    fi
  done < <(LC_ALL=C join <(printf '%s\n' "${product}") <(printf '%s\n' "${control_plane}"))
  [ "${#edits[@]}" -gt 0 ] || break
  go -C "${work}" mod edit "${edits[@]}"
  go -C "${work}" mod tidy
done

if "${check}"; then
  if ! diff -u "${cp_mod}/go.mod" "${work}/go.mod" || ! diff -u "${cp_mod}/go.sum" "${work}/go.sum" >/dev/null; then
    die "hack/tools/controlplane is not aligned with the product's dependencies: run hack/controlplane-deps.sh (make controlplane-deps) and commit"
  fi
  log "hack/tools/controlplane is aligned with the product's dependencies"
fi
