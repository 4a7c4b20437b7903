#!/usr/bin/env bash
# apt.sh: sourced by the image build scripts. tools_missing finds the commands a script needs that
# are not installed, apt_install installs the packages that provide them (root only), so each build
# script states only its own list. Uses the caller's log and die.

# tools_missing COMMAND:PACKAGE...: prints the packages of the commands not found, one per line.
tools_missing() {
  local t
  for t in "$@"; do
    command -v "${t%%:*}" >/dev/null 2>&1 || echo "${t#*:}"
  done
}

# apt_install PACKAGE...: installs them quietly (nothing when none); refuses unless root.
apt_install() {
  [[ $# -eq 0 ]] && return 0
  [[ $EUID -eq 0 ]] || die "missing tools ($*); run as root or install them"
  log "installing $*"
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "$@" >/dev/null
}
