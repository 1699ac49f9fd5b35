#!/bin/sh
# Writes deploy/.env (or the file given) with fresh random secrets for deploy/docker-compose.yml.
# Refuses to overwrite an existing file: the secret key encrypts stored secrets, and a new one
# could not read them.
set -eu
out=${1:-"$(dirname "$0")/.env"}
if [ -e "$out" ]; then
  echo "$out exists; remove it first if you really want new secrets" >&2
  exit 1
fi
random() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
password() { random 24 | tr -d '/+='; }
umask 077
cat >"$out" <<ENV
# docker compose reads this file beside docker-compose.yml. Keep it secret and out of version control.
# PostgreSQL's password (the store and the Prefect server's database).
POSTGRES_PASSWORD=$(password)
# MinIO's root login; the tradelane roles use it as their S3 credentials.
MINIO_ROOT_USER=tradelane
MINIO_ROOT_PASSWORD=$(password)
# The Fernet key stored secrets are encrypted with (the same for every role; keep a copy).
TRADELANE_SECRET_KEY=$(random 32 | tr '+/' '-_')
# The Prefect API's user:password (the Prefect UI asks for it at login).
TRADELANE_PREFECT_AUTH=tradelane:$(password)

# Optional:
# TRADELANE_WORKERS=2                              # workers (or: docker compose up --scale worker=N)
# TRADELANE_BUCKET=tradelane                       # the bucket in MinIO (the bucket service makes it)
# TRADELANE_PUBLIC_URL=https://files.example.com   # where partners reach the API
# TRADELANE_PREFECT_PUBLIC_URL=http://localhost:4200
# TRADELANE_PUBLIC_HOST=files.example.com          # the name in the self-signed FTPS certificate
# TRADELANE_IMAGE=tradelane:latest
ENV
echo "wrote $out"
