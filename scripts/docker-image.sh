#!/usr/bin/env bash
# `make image`: build the service's image (arka-labs/os:1.0.0, or $ARKA_IMAGE) on this machine,
# with whatever it needs: Docker's packages (Debian's docker.io and docker-compose) when missing,
# a running dockerd, and the debian:bookworm-slim base image, made locally with mmdebstrap when no
# registry can be reached. Then `docker compose build` (or docker-compose, v1).
set -euo pipefail
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/arka-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
say() { echo "[make image] $*"; }
die() { echo "[make image] ERROR: $*" >&2; exit 1; }
# shellcheck source=scripts/docker-lib.sh
. "$REPO_DIR/scripts/docker-lib.sh"

ensure_docker_packages
ensure_dockerd
ensure_base_image
cd "$REPO_DIR"
say "building ${ARKA_IMAGE:-arka-labs/os:1.0.0}"
compose build
if [ -n "$STARTED_DOCKERD_PID" ]; then
  say "dockerd (pid $STARTED_DOCKERD_PID) was started for this and keeps running for docker compose up"
fi
say "done: ARKA_TENANT_ID=<your-id> docker compose up -d   (or: docker-compose up -d)"
