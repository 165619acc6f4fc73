#!/usr/bin/env bash
# Set up unimodal on a fresh Debian/Ubuntu machine: system packages the sandboxed executor and
# the browser tests need, then a virtual environment in .venv with the package and its extras.
# Usage: bash tools/setup.sh            (idempotent; re-running only installs what is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PACKAGES=(bubblewrap chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: please install ${missing[*]} (apt-get install ${missing[*]}); the executor falls back to fewer protections without bubblewrap" >&2
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e '.[serve,dev]'
echo "unimodal is installed in .venv (activate with: . .venv/bin/activate)"
