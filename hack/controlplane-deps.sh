#!/usr/bin/env bash
# Aligns hack/tools/controlplane with the product: wherever kube-apiserver or
# kube-controller-manager compile a module that virtmesh compiles too, the
# control-plane module requires at least the product's version, so that a
# first build compiles those packages (client-go, k8s.io/api, x/net, ...) once
# instead of twice; that is minutes of a cold `make demo` or CI run.
#
#   hack/controlplane-deps.sh           upgrade hack/tools/controlplane in place
#   hack/controlplane-deps.sh --check   fail if it is not aligned (make verify)
#
# Run it after bumping the product's dependencies. It only ever raises the
# control plane's versions; where Kubernetes needs a newer version than the
# product, Kubernetes' version stays (and those few packages build twice).
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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
  local dir="$1"; shift
  (cd "${dir}" && go list -deps -f \
    '{{with .Module}}{{.Path}} {{with .Replace}}{{.Version}}{{else}}{{.Version}}{{end}}{{end}}' "$@") |
    LC_ALL=C sort -u
}

product="$(modules "${REPO_ROOT}" ./...)"
for _ in 1 2 3 4 5; do
  before="$(cat "${work}/go.mod")"
  # Require the product's version of every shared module whose version
  # differs; where that is older than what Kubernetes needs, `go mod tidy`
  # puts Kubernetes' version back (minimal version selection), so requiring
  # it is harmless and needs no semver comparison here.
  mapfile -t wanted < <(LC_ALL=C join <(printf '%s\n' "${product}") \
    <(modules "${work}" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager) |
    awk '$2 != $3 { print "-require=" $1 "@" $2 }')
  [ "${#wanted[@]}" -gt 0 ] || break
  (cd "${work}" && go mod edit "${wanted[@]}" && go mod tidy)
  [ "$(cat "${work}/go.mod")" != "${before}" ] || break
done

if "${check}"; then
  if ! diff -u "${cp_mod}/go.mod" "${work}/go.mod"; then
    die "hack/tools/controlplane is not aligned with the product's dependencies: run hack/controlplane-deps.sh and commit"
  fi
  log "hack/tools/controlplane is aligned with the product's dependencies"
fi
