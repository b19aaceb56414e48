#!/usr/bin/env bash
# Runs callassist on embedded defaults: SQLite and generated secrets in ./data, rooms in
# memory, no S3 or Redis. Extra arguments go to `callassist serve` (e.g. --port 18999,
# --host 0.0.0.0 --tls-self-signed to try it from a phone on the same network, or --demo
# for a first look with a built-in test caller). With no accounts yet, serve asks for the
# first ones on a terminal, or prints a one-time setup link.
source "$(dirname "$0")/env.sh"
# The agent's "read" on a photo runs Debian's tesseract with its English data (server/inspect/).
apt_install tesseract-ocr tesseract-ocr-eng
ensure_venv ""
exec .venv/bin/callassist serve --data-dir data "$@"
