#!/usr/bin/env bash
# Runs the whole test suite, installing what it needs first: Debian's chromium (driven by
# Playwright through executable_path; no browser download), PostgreSQL (the tests start
# their own throwaway server), Python packages in .venv.
# Extra arguments go to pytest.
source "$(dirname "$0")/env.sh"
apt_install chromium iproute2 util-linux postgresql redis-server haproxy
ensure_venv "[test]"

echo "callassist: ruff"
.venv/bin/ruff check .

echo "callassist: pytest"
# As root, run the tests in their own loopback-only network namespace: nothing a browser or
# a peer connection tries can leave the machine, and only 127.0.0.1 exists for ICE.
if [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
    exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest "$@"
