#!/bin/sh
# Container entrypoint for the Arka OS HCM service.
#  1. checks that /hcm, /config and /logs are writable by the uid the container runs as
#     (exit 2 with the exact fix when they are not);
#  2. initialises /hcm when it holds no HCM yet (tenant from ARKA_TENANT_ID) -- never re-initialises
#     or overwrites an existing one;
#  3. execs `arka-hcm serve` on 0.0.0.0:8080 (extra arguments are passed on).
# `docker run IMAGE arka-hcm ...` (or any other command) runs that command instead of the service.
set -eu

HCM_DIR=${ARKA_HCM_PATH:-/hcm}
CONFIG_DIR=${ARKA_CONFIG_PATH:-/config}
LOG_DIR=${ARKA_LOG_PATH:-/logs}
TENANT_ID=${ARKA_TENANT_ID:-default}
WORKERS=${ARKA_WORKERS:-1}
export ARKA_HCM_PATH="$HCM_DIR" ARKA_CONFIG_PATH="$CONFIG_DIR" ARKA_LOG_PATH="$LOG_DIR"

log() { echo "arka-entrypoint: $*" >&2; }

# Any command that is not an option (or `serve`) runs as is: e.g. `arka-hcm token create ...`, `sh`.
if [ "$#" -gt 0 ] && [ "$1" = "serve" ]; then
  shift
elif [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$@"
fi

uid=$(id -u)
gid=$(id -g)

# --- 1. writable volumes --------------------------------------------------------------------------
# A directory is usable when this uid can create a file in it; every directory below it must be
# writable too (files are replaced by write-then-rename, git adds objects and moves refs).
problems=""
readonly_mounts=""
is_readonly_mount() {  # is $1 the mount point of a read-only mount?
  awk -v d="$1" '$2 == d { n = split($4, o, ","); for (i = 1; i <= n; i++) if (o[i] == "ro") ro = 1 } END { exit ro ? 0 : 1 }' /proc/mounts 2>/dev/null
}
for d in "$HCM_DIR" "$CONFIG_DIR" "$LOG_DIR"; do
  if [ ! -d "$d" ]; then
    if ! mkdir -p "$d" 2>/dev/null; then
      problems="$problems $d"
      log "ERROR: $d does not exist and cannot be created by uid $uid"
    fi
    continue
  fi
  if is_readonly_mount "$d"; then
    readonly_mounts="$readonly_mounts $d"
    log "ERROR: $d is mounted read-only"
    continue
  fi
  probe="$d/.arka-write-test.$$"
  if ! ( : >"$probe" ) 2>/dev/null; then
    problems="$problems $d"
    log "ERROR: $d is not writable by uid:gid $uid:$gid (it is owned by $(stat -c '%u:%g' "$d"), mode $(stat -c '%a' "$d"))"
    continue
  fi
  rm -f "$probe"
  bad=$(find "$d" -type d ! -writable -print 2>/dev/null | head -n 3 || true)
  if [ -n "$bad" ]; then
    problems="$problems $d"
    log "ERROR: some folders under $d are not writable by uid:gid $uid:$gid, e.g.:"
    printf '%s\n' "$bad" | while IFS= read -r b; do
      log "         $b (owned by $(stat -c '%u:%g' "$b"), mode $(stat -c '%a' "$b"))"
    done
  fi
done
if [ -n "$readonly_mounts" ]; then
  cat >&2 <<MSG
arka-entrypoint: cannot start: read-only mount(s):$readonly_mounts
  The service writes to /hcm, /config and /logs: remove ":ro" (or read_only) from these volumes
  in docker-compose.yml / docker run -v, then start again.
MSG
  exit 2
fi
if [ -n "$problems" ]; then
  first=${problems# }; first=${first%% *}
  owner=$(stat -c '%u:%g' "$first" 2>/dev/null || echo "<uid>:<gid>")
  cat >&2 <<MSG
arka-entrypoint: cannot start: the mounted folders must be writable by the container user
  (uid:gid $uid:$gid). Problem with:$problems
Fix it on the host, then start again:
  a) give the folders (recursively) to the container user:
       sudo chown -R $uid:$gid ./arka-client        # the host folder holding hcm/ config/ logs/
MSG
  if [ "$owner" != "$uid:$gid" ]; then
    cat >&2 <<MSG
  b) or run the container as the owner of the folders ($owner), in docker-compose.yml:
       user: "$owner"                              # or: ARKA_UID=${owner%%:*} ARKA_GID=${owner##*:} docker-compose up -d
     (docker run: --user $owner)
MSG
  fi
  exit 2
fi

# --- 2. the HCM: initialise only when there is none -----------------------------------------------
if status_json=$(arka-hcm status --json 2>/dev/null); then
  log "HCM at $HCM_DIR is usable"
  existing=$(printf '%s' "$status_json" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("tenant_id") or "")' 2>/dev/null || true)
  if [ -n "$existing" ] && [ "$existing" != "$TENANT_ID" ]; then
    log "NOTE: ARKA_TENANT_ID=$TENANT_ID but the HCM in $HCM_DIR belongs to tenant '$existing'."
    log "  It is served as it is: ARKA_TENANT_ID only names the tenant of a NEW HCM. If this is the wrong"
    log "  folder, stop the service and mount the right one (ARKA_CLIENT_DIR); else set ARKA_TENANT_ID=$existing."
  fi
elif [ -e "$HCM_DIR/.git" ]; then
  # A repository is there but not usable: never re-initialise or overwrite it. `serve` decides what
  # it can still offer (and says why it cannot start if it cannot).
  log "WARNING: $HCM_DIR holds an HCM repository that is NOT usable; it is left untouched (never re-initialised)."
  log "  arka-hcm status says:"
  arka-hcm status --json >&2 || true
  log "  check it with: docker-compose run --rm arka-os arka-hcm verify   (or restore it from a backup bundle)"
else
  log "no HCM repository in $HCM_DIR: initialising it for tenant '$TENANT_ID' (HCM files already there are adopted, never overwritten)"
  if [ -n "${ARKA_TENANT_NAME:-}" ]; then
    arka-hcm init "$HCM_DIR" --layout flat --tenant-id "$TENANT_ID" --tenant-name "$ARKA_TENANT_NAME"
  else
    arka-hcm init "$HCM_DIR" --layout flat --tenant-id "$TENANT_ID"
  fi
fi

# --- 3. serve ---------------------------------------------------------------------------------------
log "starting arka-hcm serve on 0.0.0.0:8080 ($WORKERS workers, env ${ARKA_ENV:-production})"
exec arka-hcm serve --host 0.0.0.0 --port 8080 --workers "$WORKERS" "$@"
