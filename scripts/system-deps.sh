#!/usr/bin/env bash
# Installs the Debian packages that `make demo` and `make test` need, when any is missing.
# Called by the Makefile; safe to run again. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(python3-venv python3-pip openssh-server openssh-client sudo util-linux iproute2 systemd chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
