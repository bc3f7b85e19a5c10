#!/usr/bin/env bash
# Shared helpers for hack/ scripts. Source it; do not run it.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${REPO_ROOT}/bin"
export REPO_ROOT BIN_DIR

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# module_version MODFILE MODULE prints the version MODFILE requires of MODULE.
module_version() {
  local v
  v="$(awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1")"
  [ -n "$v" ] || die "no version of $2 in $1"
  printf '%s\n' "$v"
}

# build_once DEST DIR PKG [LDFLAGS] builds PKG inside the Go module DIR into
# DEST unless DEST already exists. It builds to a temporary name first, so an
# interrupted build never leaves a half-written binary behind.
build_once() {
  local dest="$1" dir="$2" pkg="$3" ldflags="${4:-}"
  if [ -x "${dest}" ]; then
    log "$(basename "${dest}") is up to date (${dest#"${REPO_ROOT}"/})"
    return 0
  fi
  log "building $(basename "${dest}") from ${pkg} (first build takes minutes; cached afterwards)"
  mkdir -p "$(dirname "${dest}")"
  (cd "${dir}" && go build -ldflags "${ldflags}" -o "${dest}.tmp" "${pkg}")
  mv "${dest}.tmp" "${dest}"
}
