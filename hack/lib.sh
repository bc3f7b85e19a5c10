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

# build_once DESTDIR MODDIR LDFLAGS NAME=PKG... builds each PKG inside the Go
# module MODDIR into DESTDIR/NAME, in a single `go build` so that the packages
# the commands share are compiled once and their links overlap other work. It
# does nothing when every NAME is already there, and builds into a temporary
# directory first so an interrupted build never leaves a half-written binary.
build_once() {
  local destdir="$1" dir="$2" ldflags="$3"; shift 3
  local spec missing=() pkgs=()
  for spec in "$@"; do
    [ -x "${destdir}/${spec%%=*}" ] || missing+=("${spec%%=*}")
    pkgs+=("${spec#*=}")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "${*%%=*} up to date (${destdir#"${REPO_ROOT}"/})"
    return 0
  fi
  log "building ${missing[*]} from source (the first build takes minutes; cached afterwards)"
  mkdir -p "${destdir}"
  local tmp
  tmp="$(mktemp -d "${destdir}/.build.XXXXXX")"
  if [ "$#" -eq 1 ]; then
    (cd "${dir}" && go build -ldflags "${ldflags}" -o "${tmp}/${1%%=*}" "${pkgs[0]}") || { rm -rf "${tmp}"; return 1; }
  else
    # With several packages, -o DIR names each binary after its import path.
    (cd "${dir}" && go build -ldflags "${ldflags}" -o "${tmp}/" "${pkgs[@]}") || { rm -rf "${tmp}"; return 1; }
  fi
  for spec in "$@"; do
    mv "${tmp}/${spec%%=*}" "${destdir}/${spec%%=*}"
  done
  rm -rf "${tmp}"
}
