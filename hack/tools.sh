#!/usr/bin/env bash
# Installs a pinned developer tool (controller-gen, golangci-lint, ginkgo, ko,
# and Debian's shellcheck package) into bin/ or the system.
# Go tools go under a versioned name, so a bump rebuilds them.
# Usage: hack/tools.sh NAME   (prints the binary's path)
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONTROLLER_TOOLS_VERSION="v0.19.0"
GOLANGCI_LINT_VERSION="v2.15.0"
KO_VERSION="v0.18.1"
GINKGO_VERSION="$(module_version "${REPO_ROOT}/go.mod" github.com/onsi/ginkgo/v2)"

install_tool() {
  local name="$1" pkg="$2" version="$3"
  local dest="${BIN_DIR}/${name}-${version}"
  if [ ! -x "${dest}" ]; then
    log "installing ${name} ${version} into bin/ (first time only)"
    local tmp
    tmp="$(mktemp -d)"
    GOBIN="${tmp}" go install "${pkg}@${version}"
    mv "${tmp}"/* "${dest}"
    rm -rf "${tmp}"
  fi
  ln -sf "$(basename "${dest}")" "${BIN_DIR}/${name}"
  printf '%s\n' "${dest}"
}

# The shellcheck tool is a Debian package, not a Go module: installed with apt-get
# (as root, or through sudo) when the machine lacks it.
install_shellcheck() {
  if ! command -v shellcheck >/dev/null; then
    log "installing shellcheck from Debian's packages (first time only)"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
    if ! { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq shellcheck; } >&2; then
      die "could not install shellcheck: apt-get install shellcheck"
    fi
  fi
  command -v shellcheck
}

case "${1:-}" in
  controller-gen) install_tool controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen "${CONTROLLER_TOOLS_VERSION}" ;;
  golangci-lint) install_tool golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "${GOLANGCI_LINT_VERSION}" ;;
  ginkgo) install_tool ginkgo github.com/onsi/ginkgo/v2/ginkgo "${GINKGO_VERSION}" ;;
  ko) install_tool ko github.com/google/ko "${KO_VERSION}" ;;
  shellcheck) install_shellcheck ;;
  *) die "usage: $0 controller-gen|golangci-lint|ginkgo|ko|shellcheck" ;;
esac
