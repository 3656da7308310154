#!/usr/bin/env bash
# Provides the Python venv that .ci/run runs schemathesis from against `GET /openapi.json`,
# idempotently: a venv that already has the pinned version is left as it is.
#
#   SCHEMATHESIS=$(bash .ci/schemathesis-setup.sh)   # prints the venv's `schemathesis` on stdout
#
# The venv is ${SCHEMATHESIS_VENV:-<repo>/target/schemathesis-venv}, built with
# ${PYTHON:-python3} (CPython 3.11 or later).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${SCHEMATHESIS_VENV:-$repo/target/schemathesis-venv}
# Pinned: the checks (and so what CI fails on) change between versions.
pin=schemathesis==4.32.5

ready() {
  [[ -x $venv/bin/schemathesis ]] && "$venv/bin/python" - "$pin" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
name, wanted = sys.argv[1].split("==")
sys.exit(version(name) != wanted)
PY
}

if ! ready; then
  echo "schemathesis-setup: installing $pin into $venv" >&2
  mkdir -p "$venv"
  "${PYTHON:-python3}" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$pin" >&2
  ready || { echo "schemathesis-setup: $venv still lacks $pin" >&2; exit 1; }
fi
echo "$(cd "$venv/bin" && pwd)/schemathesis"
