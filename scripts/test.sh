#!/usr/bin/env bash
# Runs the whole test suite, installing what it needs first: Debian's chromium (driven by
# Playwright through executable_path; no browser download), Firefox ESR (WebDriver BiDi) and
# WebKitGTK (WebKitWebDriver + MiniBrowser under Xvfb) as the other engines, PostgreSQL (the
# tests start their own throwaway server), coturn (tests/test_turn.py starts its own
# turnserver), redis-server and haproxy (the cluster tests start their own), Python packages
# in .venv, tesseract-ocr with its English data and DejaVu fonts (tests/test_inspect.py reads
# labels drawn in DejaVu Sans), janus (bench/capacity.py compares with its VideoRoom;
# tests/test_bench_janus.py runs a tiny cell) and gcc (builds bench/janus/loopback_shim.c).
# Extra arguments go to pytest.
source "$(dirname "$0")/env.sh"
apt_install chromium iproute2 util-linux postgresql coturn redis-server haproxy \
    firefox-esr webkit2gtk-driver xvfb tesseract-ocr tesseract-ocr-eng fonts-dejavu-core \
    janus gcc
ensure_venv "[test]"

echo "callassist: ruff"
.venv/bin/ruff check .

echo "callassist: pytest"
# --tb=native: failures are printed with Python's own traceback module. pytest's default
# re-parses each frame's source with ast.parse, and on CPython 3.11.7 that raised
# "SystemError: AST constructor recursion depth mismatch" once while reporting a failed
# test, which aborted the whole run (INTERNALERROR) and hid every later result.
# The 25 slowest tests (and fixture setups) end every log: where the suite's time goes.
# As root, run the tests in their own loopback-only network namespace: nothing a browser or
# a peer connection tries can leave the machine, and only 127.0.0.1 exists for ICE.
if [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
    exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh .venv/bin/python -m pytest --durations=25 --tb=native "$@"
fi
exec .venv/bin/python -m pytest --durations=25 --tb=native "$@"
