#!/usr/bin/env bash
# apt-get install for the setup scripts, which run side by side: one apt at a time (flock), and
# `apt-get update` only when the package lists do not know the package yet.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
exec 9>/tmp/tether-apt.lock
flock 9
if ! $SUDO apt-get install -y -q "$@" >/dev/null 2>&1; then
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q "$@" >/dev/null
fi
