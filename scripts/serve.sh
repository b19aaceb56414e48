#!/usr/bin/env bash
# Runs callassist on embedded defaults: SQLite and generated secrets in ./data, rooms in
# memory, no S3 or Redis. Extra arguments go to `callassist serve` (e.g. --host 0.0.0.0
# --tls-self-signed to try it from a phone on the same network).
source "$(dirname "$0")/env.sh"
ensure_venv ""
if ! .venv/bin/callassist user list --data-dir data 2>/dev/null | grep -q .; then
    echo "callassist: no accounts yet. In another terminal create the first one with:"
    echo "    $ROOT/.venv/bin/callassist user add NAME --role agent --data-dir $ROOT/data"
fi
exec .venv/bin/callassist serve --data-dir data "$@"
