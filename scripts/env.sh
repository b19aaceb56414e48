# Sourced by serve.sh and test.sh: makes sure Python, a virtual environment in .venv and the
# project (with the given extras) are installed. Safe to run again; installs only what is
# missing. Needs root for Debian packages on a fresh machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

apt_install() {
    # $@: Debian packages to install if missing.
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "callassist: installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3 python3-venv python3-pip
fi
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
    apt_install python3-venv
fi

ensure_venv() {
    # $1: pip extras, e.g. "" or "[test]"
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    local stamp=".venv/.installed$1"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e ".$1"
        touch "$stamp"
    fi
}
