#!/usr/bin/env bash
# Debian's chromium and chromium-driver for the dashboard's browser tests (tests/it/dashboard.rs),
# installed once with apt-get, then found ready. No tool downloads a browser of its own.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
echo "chromium-setup: installing Debian's chromium and chromium-driver" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq chromium chromium-driver >&2
/usr/bin/chromium --version >&2
