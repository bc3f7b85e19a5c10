#!/usr/bin/env bash
# Shared helpers for hack/ scripts. Source it; do not run it.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${REPO_ROOT}/bin"
export REPO_ROOT BIN_DIR

# BUILD_GOGC is the GOGC the Go compiler runs with in builds from hack/ and
# the Makefile: the compiler spends a fifth of a cold build collecting garbage
# at the default 100 (virtmesh cold: 205-209 s at 100, 162-173 s at 400, on 2
# cores; docs/benchmarks.md) and memory is plentiful. It is set on build
# commands only, never on the programs they build or on tests.
BUILD_GOGC="${BUILD_GOGC:-400}"
export BUILD_GOGC

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# module_version MODFILE MODULE prints the version MODFILE requires of MODULE.
module_version() {
  local v
  v="$(awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1")"
  [ -n "$v" ] || die "no version of $2 in $1"
  printf '%s\n' "$v"
}

# build_once DESTDIR MODDIR LDFLAGS NAME=PKG... builds the commands PKG...
# inside the Go module MODDIR into DESTDIR/NAME with one `go build`, so their
# compiles and links overlap (packages they share come from the build cache
# either way). NAME must be PKG's last path element without a /vN suffix: the
# name `go build -o DIR/` gives it. It does nothing when every NAME is already
# there. It builds into DESTDIR/.build-<first NAME> and moves the binaries in
# after, so an interrupted build never leaves a half-written binary, and the
# next run starts that scratch directory afresh.
build_once() {
  local destdir="$1" dir="$2" ldflags="$3"; shift 3
  local spec name pkg missing=() pkgs=()
  for spec in "$@"; do
    name="${spec%%=*}" pkg="${spec#*=}"
    if [ "$#" -gt 1 ]; then
      local base="${pkg##*/}"
      if [[ "${base}" =~ ^v[0-9]+$ ]]; then base="${pkg%/*}" && base="${base##*/}"; fi
      [ "${name}" = "${base}" ] || die "build_once: ${pkg} builds as ${base}, not ${name}"
    fi
    [ -x "${destdir}/${name}" ] || missing+=("${name}")
    pkgs+=("${pkg}")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "${*%%=*} up to date (${destdir#"${REPO_ROOT}"/})"
    return 0
  fi
  log "building ${missing[*]} from source (the first build takes minutes; cached afterwards)"
  local tmp="${destdir}/.build-${1%%=*}"
  rm -rf "${tmp}" && mkdir -p "${tmp}" || return 1
  if [ "$#" -eq 1 ]; then
    GOGC="${BUILD_GOGC}" go -C "${dir}" build -ldflags "${ldflags}" -o "${tmp}/${1%%=*}" "${pkgs[0]}" || return 1
  else
    GOGC="${BUILD_GOGC}" go -C "${dir}" build -ldflags "${ldflags}" -o "${tmp}/" "${pkgs[@]}" || return 1
  fi
  for spec in "$@"; do
    mv -f "${tmp}/${spec%%=*}" "${destdir}/${spec%%=*}" || return 1
  done
  rm -rf "${tmp}"
}
