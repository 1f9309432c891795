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
# Keep the packages' services from starting: openssh-server would otherwise start the machine's own sshd
# on every address. The lab starts its own sshd processes, on 127.0.0.1 only.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  $SUDO sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
