#!/usr/bin/env bash
# Installs the real servers and clients the tests talk to, once; a no-op when they are already here.
set -euo pipefail

need=()
command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v curl >/dev/null 2>&1 || need+=(curl)
# AS2 interoperability is checked against the openssl command line.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# SFTP: OpenSSH's sftp client and sshd (the bench's anchor), sshpass for password logins in batch mode.
command -v sftp >/dev/null 2>&1 || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v sshpass >/dev/null 2>&1 || need+=(sshpass)
# Email: Dovecot is the IMAP server the email endpoint polls.
[ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd)
# Compression: the compress/decompress steps are checked against Info-ZIP's zip/unzip and gzip.
command -v zip >/dev/null 2>&1 || need+=(zip)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
command -v gzip >/dev/null 2>&1 || need+=(gzip)
command -v npm >/dev/null 2>&1 || need+=(npm)
# PGP: tradelane runs GnuPG's gpg (core/pgp), and the tests check interoperability with its command line.
command -v gpg >/dev/null 2>&1 || need+=(gnupg)
# The web: /docs and /redoc (and the portal and console) are rendered in Debian's headless Chromium.
[ -x /usr/bin/chromium ] || need+=(chromium)
# deploy/docker-compose.yml is read by Compose itself: 1.29's `config` needs no Docker daemon.
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
# Legible text in the browser tests' pages and screenshots.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)

if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # policy-rc.d 101: install sshd without starting it as a system service.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Azure: Azurite, Microsoft's Blob storage emulator, from npm (pinned).
AZURITE_VERSION=3.37.0
if ! command -v azurite-blob >/dev/null 2>&1; then
  npm install -g --silent --no-fund --no-audit "azurite@${AZURITE_VERSION}" >/dev/null
fi
