#!/usr/bin/env bash
# Docker on a machine that may have no engine running and no image registry: shared by
# scripts/docker-image.sh (make image) and scripts/container-test.sh (make test). Source it; it
# needs say() and die() from the caller, and $WORK (a scratch folder for logs).
#   ensure_docker_packages   apt-get install docker.io, docker-compose (v1), curl, git, mmdebstrap
#   ensure_dockerd           start dockerd if none answers (sets STARTED_DOCKERD_PID)
#   ensure_base_image        make debian:bookworm-slim locally with mmdebstrap when it cannot be pulled
#   compose ...              docker compose (v2) if present, else docker-compose (v1)

BASE_IMAGE=${BASE_IMAGE:-debian:bookworm-slim}
LOCAL_BASE=${LOCAL_BASE:-local/debian:bookworm}
DEBIAN_SOURCES=${DEBIAN_SOURCES:-/etc/apt/sources.list.d/debian.sources}
STARTED_DOCKERD_PID=${STARTED_DOCKERD_PID:-}
export DEBIAN_FRONTEND=noninteractive

server_up()     { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
dockerd_alive() { ps -C dockerd -o stat= 2>/dev/null | grep -qv '^Z'; }   # zombies do not count

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}

ensure_docker_packages() {
  local pkgs=()
  command -v dockerd >/dev/null || pkgs+=(docker.io)
  command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || pkgs+=(docker-compose)
  command -v curl    >/dev/null || pkgs+=(curl)
  command -v git     >/dev/null || pkgs+=(git)
  command -v python3 >/dev/null || pkgs+=(python3)
  if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && ! command -v mmdebstrap >/dev/null; then
    pkgs+=(mmdebstrap)
  fi
  if [ ${#pkgs[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${pkgs[*]} and not root: cannot apt-get install them"
    say "apt-get install ${pkgs[*]}"
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; } >"$WORK/apt.log" 2>&1 \
      || { tail -30 "$WORK/apt.log"; die "DOCKER NOT AVAILABLE: apt-get install ${pkgs[*]} failed"; }
  fi
  command -v docker >/dev/null || die "DOCKER NOT AVAILABLE: no docker client after install"
}

ensure_dockerd() {
  if server_up; then return 0; fi
  if dockerd_alive; then
    say "a dockerd process exists but does not answer yet; waiting for it"
  else
    [ "$(id -u)" = 0 ] || die "DOCKER NOT AVAILABLE: no Docker daemon answers and we are not root to start one"
    say "starting dockerd (log: $WORK/dockerd.log)"
    rm -f /var/run/docker.pid
    # host firewall untouched: no iptables rules, no docker0 bridge (builds use the host network)
    nohup dockerd --iptables=false --ip-forward=false --bridge=none \
      >"$WORK/dockerd.log" 2>&1 </dev/null &
    STARTED_DOCKERD_PID=$!
  fi
  for _ in $(seq 1 60); do
    server_up && break
    if [ -n "$STARTED_DOCKERD_PID" ] && ! kill -0 "$STARTED_DOCKERD_PID" 2>/dev/null; then
      tail -20 "$WORK/dockerd.log" >&2 || true
      STARTED_DOCKERD_PID=""
      die "DOCKER NOT AVAILABLE: dockerd exited at start (log above)"
    fi
    sleep 1
  done
  server_up || die "DOCKER NOT AVAILABLE: dockerd did not answer within 60 s (log: $WORK/dockerd.log)"
  say "dockerd $(docker version --format '{{.Server.Version}}') storage=$(docker info --format '{{.Driver}}' 2>/dev/null)"
}

ensure_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "$BASE_IMAGE present"
    return 0
  fi
  if timeout 60 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    say "pulled $BASE_IMAGE"
    return 0
  fi
  if ! docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
    say "$BASE_IMAGE cannot be pulled (no registry here): making $LOCAL_BASE with mmdebstrap"
    command -v mmdebstrap >/dev/null || die "mmdebstrap missing"
    # the machine's extra CA certificates go into this local base only, never into the Dockerfile
    mmdebstrap --variant=minbase --include=ca-certificates \
      --aptopt='APT::Install-Recommends "false"' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --customize-hook='for c in /usr/local/share/ca-certificates/*.crt; do [ -e "$c" ] && cp "$c" "$1/usr/local/share/ca-certificates/"; done; chroot "$1" update-ca-certificates' \
      --customize-hook='printf "#!/bin/sh\nexit 101\n" >"$1/usr/sbin/policy-rc.d"; chmod 755 "$1/usr/sbin/policy-rc.d"' \
      bookworm "$WORK/base.tar" "$DEBIAN_SOURCES" >"$WORK/mmdebstrap.log" 2>&1 \
      || { tail -30 "$WORK/mmdebstrap.log"; die "mmdebstrap failed"; }
    docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' "$WORK/base.tar" "$LOCAL_BASE" >/dev/null
    rm -f "$WORK/base.tar"
  fi
  docker tag "$LOCAL_BASE" "$BASE_IMAGE"
  say "tagged $LOCAL_BASE as $BASE_IMAGE"
}
