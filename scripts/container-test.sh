#!/usr/bin/env bash
# Container test of the Arka OS HCM service: Dockerfile + docker-compose.yml + docker/entrypoint.sh,
# end to end, as a client runs it. Run by CI (.ci/run) as root from a clean clone; also usable by hand.
#
#   1. installs docker.io, docker-compose (v1), mmdebstrap, curl with apt if missing
#   2. starts dockerd if it is not answering (host firewall untouched: no iptables, no docker0 bridge)
#   3. builds a local debian:bookworm-slim base image with mmdebstrap if missing (no registry here;
#      the machine's extra CA certificates are baked into that local base, never into the Dockerfile)
#   4. builds the app image with `docker-compose build`
#   5. entrypoint refuses a volume it cannot write, with the fix (exit 2)
#   6. compose up with a TEMPORARY client folder (owned by 10001) on a free port, waits for /health
#   7. creates tokens inside the container, writes over HTTP (create mission, append journal entries,
#      a replayed request, 8 concurrent appends), reads the journal back
#   8. git clone over HTTP with a token (push refused); host-side checks of <client>/hcm/.git
#      (commit count, fsck --strict, clean work tree, ownership); logs hold no token nor journal text
#   9. restarts the container, waits healthy, checks nothing was lost (commits, journal), writes again
#  10. waits for Docker's own health status, compose down -v; on failure prints the container logs
#      (and dockerd/build logs). Prints the time of each phase.
# If Docker cannot be installed or started, it says so loudly and exits non-zero: it never skips.
#
# Environment knobs: ARKA_TEST_KEEP=1 keeps the temp folder; ARKA_KEEP_DOCKERD=1 leaves a dockerd this
# script started running; BASE_IMAGE = the tag the Dockerfile's FROM resolves to (debian:bookworm-slim);
# ARKA_IMAGE (default arka-labs/os:1.0.0, the compose file's image).
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ARKA_IMAGE=${ARKA_IMAGE:-arka-labs/os:1.0.0}
HEALTH_TRIES=${HEALTH_TRIES:-90}     # seconds

WORK=$(mktemp -d "${TMPDIR:-/tmp}/arka-container-test.XXXXXX")
CLIENT="$WORK/arka-client"
PROJECT="arkact$$"
STARTED_DOCKERD_PID=""
COMPOSE_UP=""
T0=$(date +%s)
PHASE=""
PHASE_T=$T0
TIMINGS=()

say()  { echo "[container-test] $(date +%T) $*"; }
loud() {
  echo "" >&2
  echo "######################################################################" >&2
  echo "## CONTAINER TEST FAILED: $*" >&2
  echo "######################################################################" >&2
}
die()  { loud "$*"; exit 1; }
phase() {  # phase NAME: closes the previous phase (records its duration) and opens a new one
  local now; now=$(date +%s)
  if [ -n "$PHASE" ]; then TIMINGS+=("$(printf '%-28s %4ss' "$PHASE" $((now - PHASE_T)))"); fi
  PHASE=$1; PHASE_T=$now
  [ -z "$PHASE" ] || say "=== $PHASE"
}
print_timings() {
  echo "[container-test] timings:"
  local t; for t in "${TIMINGS[@]}"; do echo "    $t"; done
  echo "    $(printf '%-28s %4ss' total $(( $(date +%s) - T0 )))"
}

# shellcheck source=scripts/docker-lib.sh
. "$REPO_DIR/scripts/docker-lib.sh"

dc() {
  docker-compose -p "$PROJECT" -f "$REPO_DIR/docker-compose.yml" --project-directory "$REPO_DIR" "$@"
}

cleanup() {
  local rc=$?
  set +e
  if [ $rc -ne 0 ]; then
    [ -n "$PHASE" ] && say "failed during phase: $PHASE"
    if [ -n "$COMPOSE_UP" ]; then
      say "--- container logs (last 200 lines)"
      dc logs --no-color --tail=200 2>&1
      say "--- container state"
      docker inspect -f 'status={{.State.Status}} exit={{.State.ExitCode}} restarts={{.RestartCount}} health={{if .State.Health}}{{.State.Health.Status}}{{end}}' "$CONTAINER" 2>&1
      if [ -d "$CLIENT/logs" ]; then
        say "--- $CLIENT/logs (tails)"
        find "$CLIENT/logs" -type f | head -5 | while read -r f; do echo "== $f"; tail -20 "$f"; done
      fi
    fi
    [ -f "$WORK/build.log" ] && { say "--- build log (last 40 lines)"; tail -40 "$WORK/build.log"; }
    [ -f "$WORK/dockerd.log" ] && { say "--- dockerd log (last 20 lines)"; tail -20 "$WORK/dockerd.log"; }
  fi
  if [ -n "$COMPOSE_UP" ]; then
    dc down -v --remove-orphans >/dev/null 2>&1 || say "WARNING: compose down failed"
  fi
  if [ -n "$STARTED_DOCKERD_PID" ] && [ "${ARKA_KEEP_DOCKERD:-0}" != 1 ]; then
    say "stopping the dockerd this script started (pid $STARTED_DOCKERD_PID)"
    kill "$STARTED_DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$STARTED_DOCKERD_PID" 2>/dev/null || break; sleep 1; done
  fi
  [ $rc -eq 0 ] || FAILED_PHASE=$PHASE
  phase ""
  print_timings
  npassed=${#TIMINGS[@]}
  if [ $rc -ne 0 ]; then
    [ -n "${FAILED_PHASE:-}" ] && npassed=$((npassed - 1))
    loud "exit code $rc (see above); work folder kept: $WORK"
  elif [ "${ARKA_TEST_KEEP:-0}" = 1 ] || { [ -n "$STARTED_DOCKERD_PID" ] && [ "${ARKA_KEEP_DOCKERD:-0}" = 1 ]; }; then
    say "PASSED (work folder kept: $WORK)"
  else
    rm -rf "$WORK"
    say "PASSED"
  fi
  # One plain closing line (each phase is one check)
  if [ $rc -eq 0 ]; then echo "container-test: $npassed passed, 0 failed"; else echo "container-test: $npassed passed, 1 failed"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------------
phase "packages"
ensure_docker_packages

# ---------------------------------------------------------------------------------------------------
phase "dockerd"
ensure_dockerd

# ---------------------------------------------------------------------------------------------------
phase "base image"
ensure_base_image

# ---------------------------------------------------------------------------------------------------
phase "app image build"
# The temp client folder lives outside the repo, but the compose file still needs these at build time.
export ARKA_CLIENT_DIR="$CLIENT"
export ARKA_BIND=127.0.0.1
export ARKA_PORT
ARKA_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export ARKA_CONTAINER_NAME="arka-os-test-$$"
export ARKA_TENANT_ID="ci-tenant"
export ARKA_UID=10001 ARKA_GID=10001
CONTAINER=$ARKA_CONTAINER_NAME
BASE_URL="http://127.0.0.1:$ARKA_PORT"
dc config -q || die "docker-compose.yml does not validate"
dc build >"$WORK/build.log" 2>&1 || die "image build failed"
say "built $ARKA_IMAGE ($(docker image inspect -f '{{.Size}}' "$ARKA_IMAGE" | awk '{printf "%d MB", $1/1000000}'))"
docker run --rm --network none --entrypoint sh "$ARKA_IMAGE" -c \
  'test "$(id -u)" = 10001 && test ! -e /hcm/.git && test -z "$(ls -A /hcm)" && command -v git >/dev/null' \
  || die "image contract: must run as uid 10001 with git installed and hold no HCM data in /hcm"

# ---------------------------------------------------------------------------------------------------
phase "entrypoint: bad volume"
mkdir -p "$WORK/rootowned"/{hcm,config,logs}
chown -R 0:0 "$WORK/rootowned"; chmod -R 755 "$WORK/rootowned"
set +e
out=$(docker run --rm --network none -v "$WORK/rootowned/hcm:/hcm" -v "$WORK/rootowned/config:/config" \
        -v "$WORK/rootowned/logs:/logs" "$ARKA_IMAGE" 2>&1)
rc=$?
set -e
[ $rc -eq 2 ] || { echo "$out"; die "entrypoint should exit 2 on an unwritable /hcm, got $rc"; }
grep -q 'chown -R 10001:10001' <<<"$out" || { echo "$out"; die "entrypoint message does not say what to chown"; }
grep -q 'user: "0:0"' <<<"$out" || { echo "$out"; die "entrypoint message does not give the user: alternative"; }
[ -z "$(ls -A "$WORK/rootowned/hcm")" ] || die "entrypoint wrote into a volume it refused"
say "unwritable volume refused with exit 2 and the fix"

# ---------------------------------------------------------------------------------------------------
phase "compose up + health"
mkdir -p "$CLIENT"/{hcm,config,logs}
chown -R 10001:10001 "$CLIENT"
COMPOSE_UP=1
dc up -d --no-build 2>&1 | sed 's/^/    /'

wait_health() {  # bounded: HEALTH_TRIES seconds; fails fast if the container stops
  local i body state
  for i in $(seq 1 "$HEALTH_TRIES"); do
    if body=$(curl -fsS -m 2 "$BASE_URL/health" 2>/dev/null); then
      say "healthy after ${i}s: $body"; return 0
    fi
    state=$(docker inspect -f '{{.State.Status}} {{.RestartCount}}' "$CONTAINER" 2>/dev/null || echo "missing 0")
    case $state in
      "running 0"|"created 0") ;;
      *) die "container state/restarts: $state (it exited or crash-looped under its restart policy)";;
    esac
    sleep 1
  done
  die "no healthy answer from $BASE_URL/health within ${HEALTH_TRIES}s"
}
wait_health
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "$BASE_URL/ready")
[ "$code" = 200 ] || die "/ready answered $code"

# ---------------------------------------------------------------------------------------------------
phase "token + HTTP writes"
HOST_GIT=(git -c safe.directory='*' -C "$CLIENT/hcm")
export GIT_OPTIONAL_LOCKS=0     # host-side reads must not rewrite the container's index
[ -d "$CLIENT/hcm/.git" ] || die "the entrypoint did not initialise $CLIENT/hcm (no .git)"
grep -q '"ci-tenant"' "$CLIENT/hcm/meta.json" || die "meta.json does not name tenant ci-tenant"
COUNT0=$("${HOST_GIT[@]}" rev-list --count HEAD)
say "initialised HCM: $COUNT0 commit(s)"

# Zone rules (contract section 6): missions are created by humans/system, agents append the journal.
json_get() { python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1].split("."): d = d[int(k)] if isinstance(d, list) else d[k]
print(d)' "$1"; }
new_token() {  # new_token ID TYPE ROLES -> sets TOKEN_<TYPE> / TOKEN_ID_<TYPE> (created inside the container)
  local out tok
  out=$(dc exec -T arka-os arka-hcm token create --id "$1" --type "$2" --roles "$3" --json) \
    || die "arka-hcm token create --id $1 failed"
  tok=$(json_get token <<<"$out") || die "token create --json did not print a token"
  [ -n "$tok" ] || die "empty token"
  [ "$(json_get id <<<"$out")" = "$1" ] || die "token create --json did not echo the id $1"
  printf -v "TOKEN_$2" '%s' "$tok"
  printf -v "TOKEN_ID_$2" '%s' "$1"
}
new_token ci-pm human reader,writer
new_token ci-agent agent reader,writer
TOKENS=("$TOKEN_human" "$TOKEN_agent")

code=$(curl -s -o /dev/null -w '%{http_code}' -m 10 -X POST -H 'Content-Type: application/json' \
  --data '{"op":"HCM_LIST_MISSIONS","request_id":"noauth","caller":{"type":"agent","id":"x","roles":["reader"]},"payload":{}}' \
  "$BASE_URL/v1/hcm/execute")
[ "$code" = 401 ] || die "a request without token answered $code, expected 401"

execute() {  # execute human|agent OP REQUEST_ID PAYLOAD_JSON -> prints the response, fails unless status ok
  local type=$1 tok id body resp code
  tok=TOKEN_$type; tok=${!tok}; id=TOKEN_ID_$type; id=${!id}
  body=$(printf '{"op":"%s","request_id":"%s","caller":{"type":"%s","id":"%s","roles":["reader","writer"]},"payload":%s}' \
    "$2" "$3" "$type" "$id" "$4")
  resp=$(curl -sS -m 30 -w '\n%{http_code}' -X POST -H "Authorization: Bearer $tok" \
    -H 'Content-Type: application/json' --data "$body" "$BASE_URL/v1/hcm/execute") || die "$2: curl failed"
  code=${resp##*$'\n'}; resp=${resp%$'\n'*}
  if [ "$code" != 200 ] || [ "$(json_get status <<<"$resp")" != ok ]; then
    echo "$resp" >&2; die "$2 ($3) as $type/$id answered HTTP $code"
  fi
  printf '%s\n' "$resp"
}
journal_payload() {  # journal_payload MESSAGE
  printf '{"mission_id":"m-ci","entry":{"author_type":"agent","author_id":"%s","entry_type":"note","message":"%s"}}' \
    "$TOKEN_ID_agent" "$1"
}
R=$(execute human HCM_CREATE_MISSION r-create '{"mission_id":"m-ci","meta":{"title":"Container test","mission_type":"audit"}}')
REV1=$(json_get revision <<<"$R")
for n in 1 2 3; do
  R=$(execute agent HCM_APPEND_JOURNAL "r-journal-$n" "$(journal_payload "container test entry $n")")
done
REV4=$(json_get revision <<<"$R")
say "4 writes acknowledged: first revision $REV1, last $REV4"
# Idempotency over HTTP: the same request again answers the first answer and adds no commit.
R=$(execute agent HCM_APPEND_JOURNAL r-journal-3 "$(journal_payload "container test entry 3")")
[ "$(json_get revision <<<"$R")" = "$REV4" ] || die "a replayed request did not answer the first revision"

# Concurrent writers: 8 appends at once across the uvicorn workers, each acknowledged as its own commit.
pids=()
for n in 1 2 3 4 5 6 7 8; do
  execute agent HCM_APPEND_JOURNAL "r-par-$n" "$(journal_payload "parallel entry $n")" >"$WORK/par-$n.json" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || die "a concurrent write failed"; done
PAR_REVS=$(for n in 1 2 3 4 5 6 7 8; do json_get revision <"$WORK/par-$n.json"; done | sort -u | wc -l)
[ "$PAR_REVS" -eq 8 ] || die "8 concurrent writes answered $PAR_REVS distinct revisions"
REV4=$("${HOST_GIT[@]}" rev-parse HEAD)
say "8 concurrent writes acknowledged with 8 distinct commits"

check_journal() {  # the mission context returns the 3 sequential entries in order, then the 8 parallel ones
  local ctx
  ctx=$(execute agent HCM_GET_MISSION_CONTEXT "r-read-$1" '{"mission_id":"m-ci","options":{"include_last_entries":50}}')
  python3 -c 'import json, sys
m = [e["message"] for e in json.load(sys.stdin)["data"]["last_journal_entries"]]
ok = m[:3] == ["container test entry %d" % n for n in (1, 2, 3)] and sorted(m[3:]) == ["parallel entry %d" % n for n in range(1, 9)]
sys.exit(0 if ok else "journal read back wrong: %r" % m)' <<<"$ctx" || die "journal read back wrong ($1)"
}
check_journal before

# ---------------------------------------------------------------------------------------------------
phase "git clone + host checks"
HEAD_HOST=$("${HOST_GIT[@]}" rev-parse HEAD)
[ "$HEAD_HOST" = "$REV4" ] || die "host HEAD $HEAD_HOST is not the last acknowledged revision $REV4"
COUNT1=$("${HOST_GIT[@]}" rev-list --count HEAD)
[ "$COUNT1" -eq $((COUNT0 + 12)) ] || die "expected $((COUNT0 + 12)) commits on the host side (1 create + 3 + 8 appends), found $COUNT1"
"${HOST_GIT[@]}" fsck --strict --no-progress >"$WORK/fsck.log" 2>&1 || { cat "$WORK/fsck.log"; die "git fsck --strict failed"; }
# The store refreshes git's index a moment after each write (config store.index_refresh_delay_s,
# 0.2 s by default), so `git status` is polled for a bounded 5 s, never assumed.
wait_clean() {
  local i dirty
  for i in $(seq 1 50); do
    dirty=$("${HOST_GIT[@]}" status --porcelain)
    [ -n "$dirty" ] || { [ "$i" -eq 1 ] || say "work tree clean after $(( (i - 1) * 100 )) ms"; return 0; }
    sleep 0.1
  done
  echo "$dirty"; die "git status --porcelain in the HCM work tree is still not empty 5 s after $1"
}
wait_clean "the writes"
[ -z "$(find "$CLIENT" ! -uid 10001 -print -quit)" ] || die "files not owned by 10001 in the client folder: $(find "$CLIENT" ! -uid 10001 | head -3)"
"${HOST_GIT[@]}" log --oneline | sed 's/^/    /'

code=$(curl -s -o /dev/null -w '%{http_code}' -m 10 "$BASE_URL/git/hcm.git/info/refs?service=git-upload-pack")
[ "$code" = 401 ] || die "git over HTTP without a token answered $code, expected 401"
GIT_TERMINAL_PROMPT=0 git clone -q "http://$TOKEN_ID_agent:$TOKEN_agent@127.0.0.1:$ARKA_PORT/git/hcm.git" "$WORK/clone" \
  2>"$WORK/clone.err" || { sed "s/$TOKEN_agent/<token>/g" "$WORK/clone.err"; die "git clone over HTTP failed"; }
[ "$(git -C "$WORK/clone" rev-parse HEAD)" = "$REV4" ] || die "the clone's HEAD is not $REV4"
[ "$(git -C "$WORK/clone" rev-list --count HEAD)" -eq "$COUNT1" ] || die "the clone does not hold all $COUNT1 commits"
git -C "$WORK/clone" fsck --strict --no-progress >/dev/null 2>&1 || die "git fsck of the clone failed"
[ "$(wc -l <"$WORK/clone/state/missions/m-ci/journal.jsonl")" -eq 11 ] || die "the clone's journal does not hold 11 lines"
# Read-only: a push is refused and changes nothing.
git -C "$WORK/clone" -c user.name=ci -c user.email=ci@example.invalid commit -q --allow-empty -m "push attempt"
if GIT_TERMINAL_PROMPT=0 git -C "$WORK/clone" push -q origin HEAD:main >"$WORK/push.out" 2>&1; then
  die "git push over HTTP was accepted; the served history must be read-only"
fi
[ "$("${HOST_GIT[@]}" rev-parse HEAD)" = "$REV4" ] || die "a refused push changed the HCM"
say "git push over HTTP refused: $(sed "s/$TOKEN_agent/<token>/g" "$WORK/push.out" | grep -v '^$' | head -1)"
say "clone over HTTP holds the $COUNT1 commits"
for t in "${TOKENS[@]}"; do
  if grep -rqF "$t" "$CLIENT/logs"; then die "a token appears in the logs"; fi
done
if grep -rqF "container test entry" "$CLIENT/logs"; then die "journal text appears in the logs"; fi
[ -n "$(find "$CLIENT/logs" -type f -size +0)" ] || die "the service wrote no logs in $CLIENT/logs"

# ---------------------------------------------------------------------------------------------------
phase "restart + persistence"
dc restart 2>&1 | sed 's/^/    /'
wait_health
[ "$("${HOST_GIT[@]}" rev-list --count HEAD)" -eq "$COUNT1" ] || die "commit count changed across the restart"
[ "$("${HOST_GIT[@]}" rev-parse HEAD)" = "$REV4" ] || die "HEAD changed across the restart (re-initialised?)"
check_journal after
R=$(execute agent HCM_APPEND_JOURNAL r-journal-after-restart "$(journal_payload "after restart")")
[ "$("${HOST_GIT[@]}" rev-list --count HEAD)" -eq $((COUNT1 + 1)) ] || die "write after restart did not add one commit"
wait_clean "the write following the restart"
say "restart kept all $COUNT1 commits and the journal; writes still work"

# ---------------------------------------------------------------------------------------------------
phase "docker healthcheck"
for _ in $(seq 1 40); do
  h=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$CONTAINER")
  [ "$h" = healthy ] && break
  [ "$h" = unhealthy ] && die "Docker reports the container unhealthy"
  sleep 1
done
[ "$h" = healthy ] || die "Docker health status is '$h' after 40 s"
say "Docker reports the container healthy"

# ---------------------------------------------------------------------------------------------------
phase "compose down"
dc down -v --remove-orphans 2>&1 | sed 's/^/    /'
COMPOSE_UP=""
[ "$("${HOST_GIT[@]}" rev-list --count HEAD)" -eq $((COUNT1 + 1)) ] || die "the HCM on the host changed after compose down"
phase ""
