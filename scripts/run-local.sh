#!/usr/bin/env bash
# The main job, locally: an HCM service on a client folder (created if missing).
set -euo pipefail
CLIENT=${ARKA_CLIENT_DIR:-./arka-client}
PORT=${PORT:-8080}
BIN=${BIN:-.venv/bin}
TENANT=${ARKA_TENANT_ID:-local-dev}
export ARKA_ENV=${ARKA_ENV:-development}

if [ ! -d "$CLIENT/hcm/.git" ]; then
  "$BIN/arka-hcm" init "$CLIENT" --tenant-id "$TENANT" --tenant-name "Local development"
fi
if ! "$BIN/arka-hcm" --client "$CLIENT" token list --json | grep -q '"id": "dev"'; then
  echo "A development token (admin, shown once; revoke with: arka-hcm --client $CLIENT token revoke dev):"
  "$BIN/arka-hcm" --client "$CLIENT" token create --id dev --type human --roles reader,writer,admin \
    --label "make run" | tail -n 1
else
  echo "The development token 'dev' was printed on the first run; to get a new one:"
  echo "  $BIN/arka-hcm --client $CLIENT token revoke dev && make run CLIENT=$CLIENT PORT=$PORT"
fi
echo "Serving $CLIENT/hcm on http://127.0.0.1:$PORT  (OpenAPI: http://127.0.0.1:$PORT/docs; Ctrl-C stops)"
exec "$BIN/arka-hcm" --client "$CLIENT" serve --host 127.0.0.1 --port "$PORT"
