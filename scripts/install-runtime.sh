#!/usr/bin/env bash
# Installs the programs `tradelane up` itself runs (not the test servers): GnuPG's gpg for the PGP
# keyring and steps (core/pgp). A no-op when they are already here.
set -euo pipefail

need=()
command -v gpg >/dev/null 2>&1 || need+=(gnupg)
command -v gpg-agent >/dev/null 2>&1 || need+=(gpg-agent)

if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
